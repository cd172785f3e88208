/* Service adapters: protobuf <-> lib. One file a service or workload kind.
 * runtime.c owns the Runtime service's method table and dispatches the
 * lifecycle calls (Inspect, Wait, Signal, Stop, Free, Logs, List) to the
 * workload kind named in the request's WorkloadRef. */
#pragma once

#include "rpc/rpc.h"
#include "runtime.pb-c.h"

typedef struct daemon_ctx {
  const char *runtime_dir; /* /run/aurae */
  const char *library_dir; /* /var/lib/aurae */
  const char *self_exe;    /* this auraed binary, for re-exec modes */
  const char *spiffe_id;   /* our own identity */
  /* Extra directories VM kernels, initramfs and disks may come from
   * (besides library_dir/images and library_dir/kernel). */
  char *const *vm_image_dirs;
  size_t n_vm_image_dirs;
  bool cell_spare_init;
  uint32_t cell_scratch_mb, cell_scratch_inodes;   /* config cell_scratch_* */
  uint32_t cell_id_pool_start, cell_id_pool_cells; /* config cell_id_pool */
  /* Files whose directories cells must not see: config file, CA,
   * certificate and key, API socket (NULL-terminated). */
  const char *const *private_files;
} daemon_ctx;

/* One workload kind's lifecycle. Every handler ends the call (see rpc.h);
 * list appends the kind's workloads to the response (allocated with
 * malloc, freed by runtime.c with the response). A NULL entry answers
 * UNIMPLEMENTED. */
typedef struct workload_ops {
  const char *kind_name;
  void (*inspect)(rpc_call *call, const Aurae__Runtime__V0__WorkloadRef *ref);
  void (*wait)(rpc_call *call, const Aurae__Runtime__V0__WaitRequest *req);
  void (*signal)(rpc_call *call, const Aurae__Runtime__V0__SignalRequest *req);
  void (*stop)(rpc_call *call, const Aurae__Runtime__V0__StopRequest *req);
  void (*free)(rpc_call *call, const Aurae__Runtime__V0__FreeRequest *req);
  void (*logs)(rpc_call *call, const Aurae__Runtime__V0__LogsRequest *req);
  int (*list)(Aurae__Runtime__V0__ListResponse *out, au_error *err);
} workload_ops;

/* Per-kind adapters; each returns its ops (entries may be NULL). */
const workload_ops *cells_workload_ops(void); /* CELL and EXECUTABLE */
const workload_ops *executables_workload_ops(void);
const workload_ops *vms_workload_ops(void);

/* Start-up/shut-down hooks of the adapters (re-adoption, cleanup). */
int cells_service_init(const daemon_ctx *ctx, au_error *err);
void cells_service_shutdown(void);
int vms_service_init(const daemon_ctx *ctx, au_error *err);
void vms_service_shutdown(void);

/* Building responses: protobuf-c message trees have no error path, and
 * these are small; out of memory aborts (pb.c). */
char *pb_strdup(const char *s); /* NULL becomes "" */
void *pb_zalloc(size_t size);

/* Health: SERVING until the daemon starts shutting down. */
void health_set_serving(bool serving);

/* Method tables. */
const rpc_method *health_methods(size_t *ret_count);
const rpc_method *runtime_methods(const daemon_ctx *ctx, size_t *ret_count);

/* Run* handlers (rpc_handler signature; userdata is the daemon_ctx). */
void cells_run_cell(rpc_call *call, const ProtobufCMessage *req, void *ctx);
void cells_run_executable(rpc_call *call, const ProtobufCMessage *req, void *ctx);
void vms_run_virtual_machine(rpc_call *call, const ProtobufCMessage *req, void *ctx);
