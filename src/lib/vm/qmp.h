/* QMP, the QEMU Machine Protocol: JSON objects, one per line, over a Unix
 * socket. The parser is pure (bytes in, messages out) so it can be tested
 * without QEMU; the client adds the socket, the greeting and capability
 * negotiation, synchronous commands and asynchronous sends. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* A line longer than this is a protocol error: QEMU's own messages are far
 * smaller, and an unbounded buffer would let a broken peer eat memory. */
#define QMP_LINE_MAX (1u << 20)

typedef enum qmp_msg_type {
  QMP_MSG_GREETING = 1, /* {"QMP": {...}} */
  QMP_MSG_RETURN,       /* {"return": ..., "id": ...} */
  QMP_MSG_ERROR,        /* {"error": {"class": ..., "desc": ...}, "id": ...} */
  QMP_MSG_EVENT,        /* {"event": "SHUTDOWN", "data": {...}, "timestamp": ...} */
} qmp_msg_type;

typedef struct qmp_msg {
  qmp_msg_type type;
  json_t *root;            /* owns everything below */
  const char *event;       /* EVENT: its name */
  json_t *data;            /* EVENT: data (may be NULL); RETURN: the value */
  const char *error_class; /* ERROR */
  const char *error_desc;  /* ERROR */
  int64_t id;              /* RETURN/ERROR: our integer id, -1 if none */
} qmp_msg;

void qmp_msg_clear(qmp_msg *m);

typedef struct qmp_parser {
  char *buf;
  size_t len, cap;
} qmp_parser;

void qmp_parser_init(qmp_parser *p);
void qmp_parser_clear(qmp_parser *p);
/* Appends bytes; -E2BIG when a line grows past QMP_LINE_MAX (the parser
 * is then reset). */
int qmp_parser_feed(qmp_parser *p, const void *data, size_t size, au_error *err);
/* 1 and *ret filled when a complete message was buffered, 0 when more bytes
 * are needed, -EBADMSG for a line that is not a QMP message (the line is
 * consumed, so the caller may go on). Blank lines are skipped. */
int qmp_parser_next(qmp_parser *p, qmp_msg *ret, au_error *err);

/* {"execute": cmd[, "arguments": args], "id": id}\n; args is borrowed and
 * may be NULL. Returns a malloc'd line. */
char *qmp_format_command(const char *cmd, json_t *args, int64_t id);

typedef struct qmp_client qmp_client;

/* Takes ownership of fd (a connected stream socket), reads the greeting
 * and negotiates capabilities, within timeout_ms. */
int qmp_client_open(int fd, int timeout_ms, qmp_client **ret, au_error *err);
void qmp_client_free(qmp_client *c);
int qmp_client_fd(const qmp_client *c);

/* Sends cmd and waits for its answer; events read meanwhile are kept for
 * qmp_client_read. *ret_return (may be NULL) gets a reference to the
 * return value. A QMP error answer is -EREMOTEIO with its desc. */
int qmp_client_execute(qmp_client *c, const char *cmd, json_t *args, json_t **ret_return,
                       int timeout_ms, au_error *err);
/* Sends cmd without waiting; the answer comes through qmp_client_read.
 * Safe to call from another thread than the reader. */
int qmp_client_send(qmp_client *c, const char *cmd, json_t *args, au_error *err);

/* Reads what is available without blocking (call when the fd polls
 * readable) and hands every message, events kept by execute first, to
 * cb. Returns 0, or -EPIPE once the peer closed the socket. */
typedef void (*qmp_msg_fn)(const qmp_msg *m, void *userdata);
int qmp_client_read(qmp_client *c, qmp_msg_fn cb, void *userdata, au_error *err);
