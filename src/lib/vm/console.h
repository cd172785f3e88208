/* A bounded in-memory log: the VM's serial console. Writers append;
 * readers hold their own cursor (an absolute byte offset), so any number
 * can read and follow at once. When the buffer is full the oldest bytes go,
 * and a reader whose cursor fell behind learns how many it missed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vm_console vm_console;

/* capacity in bytes (at least 4 KiB is used). NULL on ENOMEM. */
vm_console *vm_console_new(size_t capacity);
void vm_console_free(vm_console *c);

void vm_console_write(vm_console *c, const void *data, size_t size);
/* No more data will come (the VM ended): wakes followers, which get EOF
 * once they have read everything. */
void vm_console_close(vm_console *c);
/* Reopens after a close (an adopted VM's console reconnected). */
void vm_console_reopen(vm_console *c);

/* Total bytes ever written, and the offset of the oldest byte kept. */
uint64_t vm_console_end(vm_console *c);
uint64_t vm_console_start(vm_console *c);

/* Copies up to max bytes from *cursor on, advancing it. Bytes the cursor
 * pointed at that were overwritten are skipped and counted in
 * *ret_dropped. With wait_ms != 0 and nothing to read, blocks until data,
 * close, or wait_ms passes (-1: no limit). Returns the byte count; 0 with
 * *ret_eof when closed and fully read. */
size_t vm_console_read(vm_console *c, uint64_t *cursor, void *buf, size_t max,
                       uint64_t *ret_dropped, int wait_ms, bool *ret_eof);
