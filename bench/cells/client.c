/* The cell benchmark's loop from a C client (gRPC core, mTLS over the Unix
 * socket), through aer's own client (src/cli/client.c), so that the numbers
 * can be told apart from Python grpcio's per-call overhead. run.py starts
 * auraed and runs this beside its Python loop:
 *   bench-cells-client SOCKET CA_CRT CLIENT_CRT CLIENT_KEY N
 * prints one line per timed iteration (ms): RunCell + RunExecutable
 * (/bin/true) + Wait, then the per-call medians on stderr. Free is outside
 * the timed span, as in run.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.pb-c.h"
#include "client.h"

#define WARMUP 3

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int call(aer_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *type, ProtobufCMessage **ret) {
  aer_status st;
  ProtobufCMessage *resp = NULL;
  if (aer_client_unary(c, method, req, type, 30000, &resp, &st) < 0) {
    fprintf(stderr, "%s: %d %s\n", method, st.code, st.message);
    return -1;
  }
  if (ret)
    *ret = resp;
  else
    protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

#define M(name) "/aurae.runtime.v0.Runtime/" name

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s SOCKET CA_CRT CLIENT_CRT CLIENT_KEY N\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[5]);
  if (n < 1) return 2;
  aer_client_config cfg = {
      .socket = argv[1], .ca_crt = argv[2], .client_crt = argv[3], .client_key = argv[4]};
  aer_client *c;
  aer_status st;
  if (aer_client_open(&cfg, &c, &st) < 0) {
    fprintf(stderr, "connect: %s\n", st.message);
    return 1;
  }
  double *total = calloc((size_t)n, sizeof(double)), *cell = calloc((size_t)n, sizeof(double));
  double *exe = calloc((size_t)n, sizeof(double)), *wait = calloc((size_t)n, sizeof(double));
  double *ver = calloc((size_t)n, sizeof(double));
  if (!total || !cell || !exe || !wait || !ver) return 1;
  char *args[] = {"/bin/true"};
  int rc = 0;
  for (int i = 0; i < n + WARMUP && rc == 0; i++) {
    char name[32];
    snprintf(name, sizeof(name), "cbench-%d", i);
    Aurae__Runtime__V0__VersionRequest vr = AURAE__RUNTIME__V0__VERSION_REQUEST__INIT;
    Aurae__Runtime__V0__Cell cr = AURAE__RUNTIME__V0__CELL__INIT;
    cr.name = name;
    Aurae__Runtime__V0__Executable er = AURAE__RUNTIME__V0__EXECUTABLE__INIT;
    er.cell_name = name;
    er.name = "t";
    er.n_args = 1;
    er.args = args;
    Aurae__Runtime__V0__WorkloadRef ref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
    ref.kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_EXECUTABLE;
    ref.cell_name = name;
    ref.name = "t";
    Aurae__Runtime__V0__WaitRequest wr = AURAE__RUNTIME__V0__WAIT_REQUEST__INIT;
    wr.ref = &ref;
    Aurae__Runtime__V0__WorkloadRef cref = AURAE__RUNTIME__V0__WORKLOAD_REF__INIT;
    cref.kind = AURAE__RUNTIME__V0__WORKLOAD_KIND__WORKLOAD_KIND_CELL;
    cref.name = name;
    Aurae__Runtime__V0__FreeRequest fr = AURAE__RUNTIME__V0__FREE_REQUEST__INIT;
    fr.ref = &cref;

    double t0 = now_ms();
    if (call(c, M("Version"), &vr.base, &aurae__runtime__v0__version_response__descriptor, NULL) <
        0) {
      rc = 1;
      break;
    }
    double t1 = now_ms();
    ProtobufCMessage *ws = NULL;
    if (call(c, M("RunCell"), &cr.base, &aurae__runtime__v0__cell_status__descriptor, NULL) < 0) {
      rc = 1;
      break;
    }
    double t2 = now_ms();
    if (call(c, M("RunExecutable"), &er.base, &aurae__runtime__v0__executable_status__descriptor,
             NULL) < 0) {
      rc = 1;
      break;
    }
    double t3 = now_ms();
    if (call(c, M("Wait"), &wr.base, &aurae__runtime__v0__workload_status__descriptor, &ws) < 0) {
      rc = 1;
      break;
    }
    double t4 = now_ms();
    const Aurae__Runtime__V0__WorkloadStatus *w = (const void *)ws;
    if (!w->executable || w->executable->exit_code != 0) {
      fprintf(stderr, "wait: /bin/true did not exit 0\n");
      rc = 1;
    }
    protobuf_c_message_free_unpacked(ws, NULL);
    if (call(c, M("Free"), &fr.base, &aurae__runtime__v0__free_response__descriptor, NULL) < 0)
      rc = 1;
    if (i >= WARMUP) {
      int k = i - WARMUP;
      ver[k] = t1 - t0;
      cell[k] = t2 - t1;
      exe[k] = t3 - t2;
      wait[k] = t4 - t3;
      total[k] = t4 - t1;
      printf("%f\n", total[k]);
    }
  }
  if (rc == 0)
    fprintf(stderr,
            "C client medians (ms): Version %.2f, RunCell %.2f, RunExecutable %.2f, "
            "Wait %.2f\n",
            median(ver, n), median(cell, n), median(exe, n), median(wait, n));
  aer_client_close(c);
  free(total);
  free(cell);
  free(exe);
  free(wait);
  free(ver);
  return rc;
}
