/* auraed: read flags and config, take the socket lock, serve until a
 * signal, shut down cleanly. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authz.h"
#include "cell/idpool.h"
#include "cleanup.h"
#include "config.h"
#include "log.h"
#include "pki/pki.h"
#include "rpc/server.h"
#include "services/services.h"
#include "version.h"

static void usage(FILE *out) {
  fprintf(out,
          "Usage: auraed [OPTIONS]\n"
          "Runs the Aurae runtime daemon: the Runtime API over mutual TLS.\n\n"
          "  -c, --config PATH       config file (default " AURAED_DEFAULT_CONFIG ", optional)\n"
          "  -s, --socket PATH       Unix socket (default /run/aurae/aurae.sock; \"\" disables)\n"
          "  -l, --listen ADDR       also listen on TCP, mTLS only: [::1]:8443,\n"
          "                          [fe80::1%%tap0]:8443, 127.0.0.1:8443 (repeatable)\n"
          "      --runtime-dir DIR   state of running workloads (default /run/aurae)\n"
          "      --library-dir DIR   images, kernels (default /var/lib/aurae)\n"
          "      --ca-crt PATH       CA that signs client certificates\n"
          "      --server-crt PATH   this daemon's certificate\n"
          "      --server-key PATH   its key\n"
          "  -d, --daemon            run in the background; return once serving\n"
          "      --log-file PATH     with --daemon (default /var/log/aurae/auraed.log)\n"
          "  -v, --verbose           debug logging\n"
          "      --version           print the version\n"
          "  -h, --help              this help\n");
}

static int set_flag_string(char **field, const char *value) {
  if (config_set_string(field, value) < 0) {
    log_error("out of memory");
    return -1;
  }
  return 0;
}

/* The config file in use, for daemon_ctx.private_files. */
static const char *config_file = AURAED_DEFAULT_CONFIG;

/* Returns 0 to run, 1 when done (help/version), -1 on error. */
static int parse_args(int argc, char **argv, auraed_config *config) {
  enum { OPT_RUNTIME = 256, OPT_LIBRARY, OPT_CA, OPT_CRT, OPT_KEY, OPT_VERSION, OPT_LOG };
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"socket", required_argument, NULL, 's'},
      {"listen", required_argument, NULL, 'l'},
      {"runtime-dir", required_argument, NULL, OPT_RUNTIME},
      {"library-dir", required_argument, NULL, OPT_LIBRARY},
      {"ca-crt", required_argument, NULL, OPT_CA},
      {"server-crt", required_argument, NULL, OPT_CRT},
      {"server-key", required_argument, NULL, OPT_KEY},
      {"daemon", no_argument, NULL, 'd'},
      {"log-file", required_argument, NULL, OPT_LOG},
      {"verbose", no_argument, NULL, 'v'},
      {"version", no_argument, NULL, OPT_VERSION},
      {"help", no_argument, NULL, 'h'},
      {0},
  };
  /* The config file first, so that flags override it. */
  const char *config_path = NULL;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
      config_path = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      config_path = argv[i] + 9;
  }
  au_error err = {0};
  if (config_load(config, config_path ? config_path : AURAED_DEFAULT_CONFIG, config_path == NULL,
                  &err) < 0) {
    log_error("%s", err.msg);
    return -1;
  }
  if (config_path) config_file = config_path;
  int c;
  while ((c = getopt_long(argc, argv, "c:s:l:dvh", longopts, NULL)) != -1) {
    int r = 0;
    switch (c) {
    case 'c': break;
    case 's': r = set_flag_string(&config->socket_path, optarg); break;
    case 'l':
      if ((r = config_add_listen(config, optarg, &err)) < 0) log_error("--listen: %s", err.msg);
      break;
    case OPT_RUNTIME: r = set_flag_string(&config->runtime_dir, optarg); break;
    case OPT_LIBRARY: r = set_flag_string(&config->library_dir, optarg); break;
    case OPT_CA: r = set_flag_string(&config->ca_crt, optarg); break;
    case OPT_CRT: r = set_flag_string(&config->server_crt, optarg); break;
    case OPT_KEY: r = set_flag_string(&config->server_key, optarg); break;
    case 'd': config->daemonize = true; break;
    case OPT_LOG: r = set_flag_string(&config->log_file, optarg); break;
    case 'v': config->verbose = true; break;
    case OPT_VERSION: printf("auraed %s (%s)\n", AURAE_VERSION, AURAE_GIT_COMMIT); return 1;
    case 'h': usage(stdout); return 1;
    default: usage(stderr); return -1;
    }
    if (r < 0) return -1;
  }
  if (optind < argc) {
    log_error("unexpected argument \"%s\" (see auraed --help)", argv[optind]);
    return -1;
  }
  return 0;
}

static int mkdir_p(const char *path, mode_t mode) {
  char buf[4096];
  if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) return -ENAMETOOLONG;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST) return -errno;
  return 0;
}

/* An exclusive lock on PATH holding our pid; what: what it guards, for the
 * message a second daemon gets. */
static int take_lock(const char *path, const char *what, au_error *err) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return au_error_errno(err, -errno, "open lock %s", path);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    char holder[32] = "";
    ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    close(fd);
    if (e == EWOULDBLOCK)
      return au_error_set(err, -EBUSY, "another auraed (pid %s) %s; stop it first",
                          holder[0] ? holder : "?", what);
    return au_error_errno(err, -e, "lock %s", path);
  }
  char pid[32];
  int len = snprintf(pid, sizeof(pid), "%d\n", getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
    log_warn("cannot write pid to %s: %s", path, strerror(errno));
  return fd;
}

/* gRPC unlinks an existing socket file when it binds, so a second daemon
 * would silently steal the first one's socket: hold a lock beside it. */
static int take_socket_lock(const char *socket_path, au_error *err) {
  char path[4200], what[4200];
  snprintf(path, sizeof(path), "%s.lock", socket_path);
  snprintf(what, sizeof(what), "is serving %s (or use --socket)", socket_path);
  return take_lock(path, what, err);
}

/* Cells and VMs live in the runtime dir whatever the socket: two daemons
 * sharing one would both supervise (and re-adopt) the same workloads. */
static int take_runtime_lock(const char *runtime_dir, au_error *err) {
  char path[4200], what[4200];
  snprintf(path, sizeof(path), "%s/auraed.lock", runtime_dir);
  snprintf(what, sizeof(what), "uses the runtime dir %s (or use --runtime-dir)", runtime_dir);
  return take_lock(path, what, err);
}

/* The socket's directory must not let anyone else replace the socket with
 * a symlink between our bind and chmod, or swap it later. */
static int check_socket_dir(const char *socket_path, au_error *err) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", socket_path);
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, sizeof(dir), ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  struct stat st;
  if (stat(dir, &st) < 0) return au_error_errno(err, -errno, "socket directory %s", dir);
  if (st.st_uid != geteuid() && st.st_uid != 0)
    return au_error_set(err, -EPERM, "socket directory %s: owned by uid %u, not by us or root", dir,
                        (unsigned)st.st_uid);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return au_error_set(err, -EPERM,
                        "socket directory %s: writable by group or others (mode %04o); "
                        "use a private directory such as /run/aurae",
                        dir, (unsigned)(st.st_mode & 07777));
  return 0;
}

static int listen_unix(rpc_server *server, const auraed_config *config, au_error *err) {
  char address[4200];
  snprintf(address, sizeof(address), "unix:%s", config->socket_path);
  int r = check_socket_dir(config->socket_path, err);
  if (r < 0) return r;
  /* No window in which the socket has looser permissions than asked:
   * gRPC creates it under this umask, then we set the exact mode. */
  mode_t old = umask(0177);
  r = rpc_server_listen(server, address, err);
  umask(old);
  if (r < 0) return r;
  if (config->socket_group) {
    struct group *g = getgrnam(config->socket_group);
    if (!g) return au_error_set(err, -ENOENT, "socket_group: no group %s", config->socket_group);
    if (lchown(config->socket_path, (uid_t)-1, g->gr_gid) < 0)
      return au_error_errno(err, -errno, "chown %s", config->socket_path);
  }
  if (chmod(config->socket_path, config->socket_mode) < 0)
    return au_error_errno(err, -errno, "chmod %s", config->socket_path);
  return 0;
}

static rpc_role authorize(const char *identity, void *userdata) {
  return authz_role(userdata, identity);
}

typedef struct daemon_state {
  auraed_config config;
  daemon_ctx ctx;
  char spiffe_id[512];
  char self_exe[4096];
  rpc_server *server;
  int lock_fd;         /* the socket's */
  int runtime_lock_fd; /* the runtime dir's */
  const char *private_files[6];
} daemon_state;

static int prepare(daemon_state *d, au_error *err) {
  auraed_config *c = &d->config;
  int r;
  if ((r = mkdir_p(c->runtime_dir, 0711)) < 0)
    return au_error_errno(err, r, "create runtime dir %s", c->runtime_dir);
  d->runtime_lock_fd = take_runtime_lock(c->runtime_dir, err);
  if (d->runtime_lock_fd < 0) return d->runtime_lock_fd;
  if ((r = mkdir_p(c->library_dir, 0700)) < 0)
    return au_error_errno(err, r, "create library dir %s", c->library_dir);
  if (pki_cert_spiffe_id(c->server_crt, d->spiffe_id, sizeof(d->spiffe_id), err) < 0)
    return au_error_prefix(err, "server identity");
  if (!c->authz.configured && authz_default_rules(&c->authz, d->spiffe_id, err) < 0)
    return err->code;
  ssize_t n = readlink("/proc/self/exe", d->self_exe, sizeof(d->self_exe) - 1);
  d->self_exe[n > 0 ? n : 0] = '\0';
  d->ctx = (daemon_ctx){.runtime_dir = c->runtime_dir,
                        .library_dir = c->library_dir,
                        .self_exe = d->self_exe,
                        .spiffe_id = d->spiffe_id,
                        .vm_image_dirs = c->vm_image_dirs,
                        .n_vm_image_dirs = c->n_vm_image_dirs,
                        .cell_spare_init = c->cell_spare_init,
                        .cell_scratch_mb = c->cell_scratch_mb,
                        .cell_scratch_inodes = c->cell_scratch_inodes,
                        .cell_id_pool_start = c->cell_id_pool_start,
                        .cell_id_pool_cells = c->cell_id_pool_cells,
                        .private_files = d->private_files};
  const char *priv[] = {config_file, c->ca_crt, c->server_crt, c->server_key,
                        c->socket_path[0] ? c->socket_path : NULL};
  memcpy(d->private_files, priv, sizeof(priv));
  return 0;
}

static int serve(daemon_state *d, au_error *err) {
  auraed_config *c = &d->config;
  rpc_server_opts opts = {
      .ca_crt_path = c->ca_crt,
      .server_crt_path = c->server_crt,
      .server_key_path = c->server_key,
      .max_message_bytes = c->max_message_bytes,
      .max_concurrent_streams = c->max_concurrent_streams,
      .handshake_timeout_ms = c->handshake_timeout_ms,
      .idle_timeout_ms = c->idle_timeout_ms,
      .authorize = authorize,
      .authorize_userdata = &c->authz,
  };
  int r = rpc_server_new(&opts, &d->server, err);
  if (r < 0) return r;
  size_t n;
  const rpc_method *m = health_methods(&n);
  rpc_server_add_methods(d->server, m, n);
  m = runtime_methods(&d->ctx, &n);
  rpc_server_add_methods(d->server, m, n);
  if (c->socket_path[0]) {
    d->lock_fd = take_socket_lock(c->socket_path, err);
    if (d->lock_fd < 0) return d->lock_fd;
    if ((r = listen_unix(d->server, c, err)) < 0) return r;
  }
  for (size_t i = 0; i < c->n_listen; i++)
    if ((r = rpc_server_listen(d->server, c->listen[i], err)) < 0) return r;
  if (!c->socket_path[0] && c->n_listen == 0)
    return au_error_set(err, -EINVAL, "nothing to listen on: set socket or --listen");
  /* Re-adopt workloads before the first call can see them half-known. A
   * failing kind answers UNAVAILABLE; the rest of the daemon still serves. */
  if (cells_service_init(&d->ctx, err) < 0) log_warn("auraed: %s", err->msg);
  if (vms_service_init(&d->ctx, err) < 0) log_warn("auraed: %s", err->msg);
  au_error_clear(err);
  return rpc_server_start(d->server, err);
}

static void log_listening(const daemon_state *d) {
  const auraed_config *c = &d->config;
  char where[2048] = "";
  size_t off = 0;
  if (c->socket_path[0])
    off += (size_t)snprintf(where + off, sizeof(where) - off, " unix:%s", c->socket_path);
  for (size_t i = 0; i < c->n_listen && off < sizeof(where); i++)
    off += (size_t)snprintf(where + off, sizeof(where) - off, " %s", c->listen[i]);
  log_info("auraed %s serving as %s (mTLS) on%s", AURAE_VERSION, d->spiffe_id, where);
}

/* --daemon: fork before any thread exists; the parent waits until the
 * child reports that it serves (or why it could not) and exits with that,
 * so `auraed --daemon && aer health` is race-free. Returns the fd to report
 * readiness on (child) or never returns (parent). */
static int daemonize(const auraed_config *c) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    log_error("daemonize: pipe: %s", strerror(errno));
    exit(1);
  }
  pid_t pid = fork();
  if (pid < 0) {
    log_error("daemonize: fork: %s", strerror(errno));
    exit(1);
  }
  if (pid > 0) {
    close(pipefd[1]);
    char status = 1;
    if (read(pipefd[0], &status, 1) != 1) status = 1;
    exit(status);
  }
  close(pipefd[0]);
  setsid();
  const char *log_path = c->log_file ? c->log_file : "/var/log/aurae/auraed.log";
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", log_path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    mkdir_p(dir, 0750);
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
  if (log_fd >= 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
  } else {
    log_error("daemonize: open %s: %s", log_path, strerror(errno));
  }
  if (null_fd > 2) close(null_fd);
  if (log_fd > 2) close(log_fd);
  return pipefd[1];
}

/* Ids delegated to users in /etc/subuid or /etc/subgid (rootless podman's
 * ranges, say) must never be a cell's too: such a user could own a cell's
 * files and signal its processes. An overlap is a configuration error, so
 * it stops auraed before anything starts. A file that cannot be read is
 * only a warning: it is not ours, and the pool works without it. */
static int check_subids(const auraed_config *c) {
  static const char *const files[] = {"/etc/subuid", "/etc/subgid"};
  uint64_t len = (uint64_t)c->cell_id_pool_cells * CELL_IDS_PER_CELL;
  for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
    char msg[512];
    int r = cell_idpool_check_subids(files[i], c->cell_id_pool_start, len, msg, sizeof(msg));
    if (r == -EEXIST) {
      log_error("auraed: %s; set cell_id_pool in the config to ids given to no user", msg);
      return -1;
    }
    if (r < 0) log_warn("auraed: cannot check the cell id pool against %s: %s", files[i], msg);
  }
  return 0;
}

static void report_ready(int fd, char status) {
  if (fd < 0) return;
  ssize_t ignored = write(fd, &status, 1);
  (void)ignored;
  close(fd);
}

static void write_pidfile(const auraed_config *c) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/auraed.pid", c->runtime_dir);
  _cleanup_fclose_ FILE *f = fopen(path, "we");
  if (f) fprintf(f, "%d\n", getpid());
}

static void wait_for_stop_signal(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      log_info("SIGHUP: configuration reload is not supported; restart auraed to apply changes");
      continue;
    }
    log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return;
  }
}

int daemon_main(int argc, char **argv) {
  /* Signals are handled synchronously by the main thread; every thread
   * started from here on inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  daemon_state d = {.lock_fd = -1, .runtime_lock_fd = -1};
  config_init_defaults(&d.config);
  int r = parse_args(argc, argv, &d.config);
  if (r != 0) {
    config_free(&d.config);
    return r > 0 ? 0 : 2;
  }
  au_log_set_level(d.config.verbose ? AU_LOG_DEBUG : AU_LOG_INFO);
  if (check_subids(&d.config) < 0) {
    config_free(&d.config);
    return 2;
  }
  int ready_fd = d.config.daemonize ? daemonize(&d.config) : -1;

  grpc_init();
  rpc_install_log_bridge();
  au_error err = {0};
  int exit_code = 0;
  if (prepare(&d, &err) < 0 || serve(&d, &err) < 0) {
    log_error("auraed: %s", err.msg);
    exit_code = 1;
    report_ready(ready_fd, 1);
  } else {
    log_listening(&d);
    write_pidfile(&d.config);
    report_ready(ready_fd, 0);
    wait_for_stop_signal();
  }
  health_set_serving(false);
  rpc_server_shutdown(d.server, d.config.shutdown_grace_ms);
  cells_service_shutdown(); /* workloads keep running */
  vms_service_shutdown();   /* VMs keep running, re-adopted on start */
  /* Remove the socket only if we own it (lock held): never another
   * daemon's. */
  if (d.lock_fd >= 0) {
    unlink(d.config.socket_path);
    close(d.lock_fd);
  }
  if (d.runtime_lock_fd >= 0) {
    char pidfile[4200];
    snprintf(pidfile, sizeof(pidfile), "%s/auraed.pid", d.config.runtime_dir);
    unlink(pidfile);
    close(d.runtime_lock_fd);
  }
  grpc_shutdown();
  if (exit_code == 0) log_info("auraed stopped");
  config_free(&d.config);
  return exit_code;
}
