/* The one errno -> gRPC status table of the daemon. */
#include <errno.h>

#include "rpc.h"

rpc_status rpc_status_from_errno(int negative_errno) {
  switch (-negative_errno) {
  case 0: return RPC_OK;
  case EINVAL:
  case ENAMETOOLONG:
  case EDOM: return RPC_INVALID_ARGUMENT;
  case ENOENT:
  case ESRCH:
  case ENXIO: return RPC_NOT_FOUND;
  case EEXIST: return RPC_ALREADY_EXISTS;
  case EPERM:
  case EACCES: return RPC_PERMISSION_DENIED;
  case EOPNOTSUPP:
  case ENODEV:
  case EBUSY:
  case ENOTEMPTY:
  case ENOEXEC:
  case ECHILD: return RPC_FAILED_PRECONDITION;
  case ETIMEDOUT: return RPC_DEADLINE_EXCEEDED;
  case E2BIG:
  case ENOSPC:
  case ENOMEM:
  case EMFILE:
  case ENFILE:
  case EMSGSIZE:
  case EDQUOT: return RPC_RESOURCE_EXHAUSTED;
  case ECANCELED: return RPC_CANCELLED;
  case ENOSYS: return RPC_UNIMPLEMENTED;
  case ERANGE: return RPC_OUT_OF_RANGE;
  case EAGAIN:
  case ECONNREFUSED:
  case EHOSTUNREACH: return RPC_UNAVAILABLE;
  default: return RPC_INTERNAL;
  }
}

const char *rpc_status_name(rpc_status status) {
  static const char *const names[] = {"OK",
                                      "CANCELLED",
                                      "UNKNOWN",
                                      "INVALID_ARGUMENT",
                                      "DEADLINE_EXCEEDED",
                                      "NOT_FOUND",
                                      "ALREADY_EXISTS",
                                      "PERMISSION_DENIED",
                                      "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION",
                                      "ABORTED",
                                      "OUT_OF_RANGE",
                                      "UNIMPLEMENTED",
                                      "INTERNAL",
                                      "UNAVAILABLE",
                                      "DATA_LOSS",
                                      "UNAUTHENTICATED"};
  if ((unsigned)status < sizeof(names) / sizeof(names[0])) return names[status];
  return "UNKNOWN";
}
