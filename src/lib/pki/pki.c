/* The PKI on disk: creating a CA directory, issuing certificates into it,
 * loading the CA and reading certificates back. The OpenSSL work itself is
 * in pki_x509.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "names.h"
#include "pki_internal.h"

/* Room for ".crt" and the temporary name's ". .XXXXXX" in NAME_MAX. */
#define STEM_MAX (NAME_MAX - 16)

static const char *const default_clients[] = {PKI_DEFAULT_CLIENT, NULL};

static void ca_freep(pki_ca **p) { pki_ca_free(*p); }
static void pem_clearp(pki_pem *p) { pki_pem_clear(p); }
static void secret_freep(char **p) { pki_free_secret(*p); }
#define _cleanup_ca_ _cleanup_(ca_freep)
#define _cleanup_pem_ _cleanup_(pem_clearp)
#define _cleanup_secret_ _cleanup_(secret_freep)

/* --- files --- */

static char *path_join(const char *dir, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", dir, name) < 0) return NULL;
  return p;
}

static bool file_exists(const char *dir, const char *name) {
  _cleanup_free_ char *path = path_join(dir, name);
  struct stat st;
  return path && lstat(path, &st) == 0;
}

/* mkdir -p: missing parents 0755, the directory itself 0700 (it holds
 * keys). An existing directory keeps its mode: it is the admin's. */
static int mkdir_p(const char *dir, au_error *err) {
  _cleanup_free_ char *copy = strdup(dir);
  if (!copy) return au_error_set(err, -ENOMEM, "out of memory");
  size_t len = strlen(copy);
  while (len > 1 && copy[len - 1] == '/')
    copy[--len] = '\0';
  for (char *p = copy + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(copy, 0755) < 0 && errno != EEXIST)
      return au_error_errno(err, -errno, "create directory %s", copy);
    *p = '/';
  }
  if (mkdir(copy, 0700) < 0 && errno != EEXIST)
    return au_error_errno(err, -errno, "create directory %s", copy);
  struct stat st;
  if (stat(copy, &st) < 0) return au_error_errno(err, -errno, "stat %s", copy);
  if (!S_ISDIR(st.st_mode)) return au_error_set(err, -ENOTDIR, "%s is not a directory", copy);
  return 0;
}

/* Serializes writers of one directory (two `aer pki` runs, or a daemon
 * minting instance identities); the lock goes with the returned fd. */
static int lock_dir(const char *dir, au_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "open %s", dir);
  if (flock(fd, LOCK_EX) < 0) {
    int r = -errno;
    close(fd);
    return au_error_errno(err, r, "lock %s", dir);
  }
  return fd;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Move tmp to final; without replace, fail with -EEXIST rather than
 * overwrite (atomically: a check before would race). */
static int move_into_place(const char *tmp, const char *final, bool replace) {
  if (replace) return rename(tmp, final) < 0 ? -errno : 0;
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -errno;
  /* A filesystem without RENAME_NOREPLACE: link() fails with EEXIST too. */
  if (link(tmp, final) < 0) return -errno;
  unlink(tmp);
  return 0;
}

/* Write data to dir/name with mode. The file is made by mkostemp (O_EXCL,
 * 0600) under a hidden temporary name in the same directory, so a key is
 * never visible with a wider mode nor half-written under its final name. */
static int write_file(const char *dir, const char *name, const char *data, mode_t mode,
                      bool replace, au_error *err) {
  _cleanup_free_ char *final = path_join(dir, name);
  _cleanup_free_ char *tmp = NULL;
  if (!final || asprintf(&tmp, "%s/.%s.XXXXXX", dir, name) < 0)
    return au_error_set(err, -ENOMEM, "out of memory");
  _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "create %s", final);
  int r = 0;
  /* Explicitly, whatever the umask. */
  if (fchmod(fd, mode) < 0) r = -errno;
  if (r == 0) r = write_all(fd, data, strlen(data));
  if (r == 0 && fsync(fd) < 0) r = -errno;
  if (r == 0 && close(TAKE_FD(fd)) < 0) r = -errno;
  if (r == 0) r = move_into_place(tmp, final, replace);
  if (r < 0) {
    unlink(tmp);
    return r == -EEXIST ? au_error_set(err, r, "%s already exists", final)
                        : au_error_errno(err, r, "write %s", final);
  }
  return 0;
}

static int write_pair(const char *dir, const char *stem, const pki_pem *pem, bool replace,
                      au_error *err) {
  char name[NAME_MAX + 1];
  snprintf(name, sizeof(name), "%s.key", stem);
  int r = write_file(dir, name, pem->key, 0600, replace, err);
  if (r < 0) return r;
  snprintf(name, sizeof(name), "%s.crt", stem);
  return write_file(dir, name, pem->cert, 0644, replace, err);
}

static void sync_dir(const char *dir) {
  _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) (void)fsync(fd);
}

int pki_file_stem(pki_kind kind, const char *name, char *buf, size_t size, au_error *err) {
  int r, n;
  switch (kind) {
  case PKI_KIND_SERVER:
    if ((r = pki_validate_hostname("hostname", name, err)) < 0) return r;
    n = snprintf(buf, size, "server");
    break;
  case PKI_KIND_CLIENT:
    if ((r = name_validate_label("user name", name, err)) < 0) return r;
    n = snprintf(buf, size, "client-%s", name);
    break;
  case PKI_KIND_INSTANCE:
    if ((r = name_validate_path("instance name", name, err)) < 0) return r;
    n = snprintf(buf, size, "instance-%s", name);
    /* '.' never occurs in a name part, so "a/b" and "a-b" stay apart. */
    for (char *p = buf; n > 0 && (size_t)n < size && *p; p++)
      if (*p == '/') *p = '.';
    break;
  default: return au_error_set(err, -EINVAL, "certificate kind: unknown (%d)", (int)kind);
  }
  if (n < 0 || (size_t)n >= size)
    return au_error_set(err, -ENAMETOOLONG, "file name for %s too long", name);
  return 0;
}

/* --- the CA --- */

/* A key is never loaded with a password prompt on a terminal: auraed has
 * none, and our keys are not encrypted. */
static int no_password(char *buf, int size, int rwflag, void *userdata) {
  (void)buf, (void)size, (void)rwflag, (void)userdata;
  return -1;
}

static int read_pem_file(const char *path, bool is_key, void **ret, au_error *err) {
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return au_error_errno(err, -errno, "read %s", path);
  void *obj = is_key ? (void *)PEM_read_PrivateKey(f, NULL, no_password, NULL)
                     : (void *)PEM_read_X509(f, NULL, NULL, NULL);
  if (!obj) {
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "read %s", path);
    return pki_ssl_error(err, what);
  }
  *ret = obj;
  return 0;
}

int pki_ca_load(const char *dir, pki_ca **ret, au_error *err) {
  ERR_clear_error();
  if (!dir) dir = PKI_DEFAULT_DIR;
  _cleanup_free_ char *crt_path = path_join(dir, "ca.crt");
  _cleanup_free_ char *key_path = path_join(dir, "ca.key");
  _cleanup_ca_ pki_ca *ca = calloc(1, sizeof(*ca));
  if (!crt_path || !key_path || !ca) return au_error_set(err, -ENOMEM, "out of memory");
  int r;
  if ((r = read_pem_file(crt_path, false, (void **)&ca->cert, err)) < 0 ||
      (r = read_pem_file(key_path, true, (void **)&ca->key, err)) < 0)
    return au_error_prefix(err, "load CA");
  if (X509_check_ca(ca->cert) < 1)
    return au_error_set(err, -EINVAL, "load CA: %s is not a CA certificate", crt_path);
  if (X509_check_private_key(ca->cert, ca->key) != 1) {
    ERR_clear_error();
    return au_error_set(err, -EINVAL, "load CA: %s does not belong to %s", key_path, crt_path);
  }
  if ((r = pki_ca_read_trust_domain(ca->cert, ca->trust_domain, sizeof(ca->trust_domain), err)) <
          0 ||
      (r = pki_cert_to_pem(ca->cert, &ca->cert_pem, err)) < 0)
    return au_error_prefix(err, "load CA %s", crt_path);
  log_debug("pki: loaded CA %s (trust domain %s)", crt_path, ca->trust_domain);
  *ret = TAKE_PTR(ca);
  return 0;
}

void pki_ca_free(pki_ca *ca) {
  if (!ca) return;
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
  free(ca->cert_pem);
  free(ca);
}

const char *pki_ca_trust_domain(const pki_ca *ca) { return ca->trust_domain; }
const char *pki_ca_cert_pem(const pki_ca *ca) { return ca->cert_pem; }

/* --- pki init --- */

static int resolve_hostname(const char *given, char *buf, size_t size, au_error *err) {
  if (given) {
    if (strlen(given) >= size) return au_error_set(err, -EINVAL, "hostname: too long");
    snprintf(buf, size, "%s", given);
  } else if (gethostname(buf, size) < 0) {
    return au_error_errno(err, -errno, "gethostname");
  }
  buf[size - 1] = '\0';
  /* DNS names are case-insensitive; one spelling keeps the SPIFFE ID
   * (which is compared exactly) stable. */
  for (char *p = buf; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  int r = pki_validate_hostname("hostname", buf, err);
  if (r < 0 && !given) au_error_prefix(err, "the system's hostname is unusable, give one");
  return r;
}

typedef struct init_plan {
  pki_ca *ca;
  pki_pem server;
  pki_pem *clients;
  size_t n_clients;
} init_plan;

static void init_plan_clear(init_plan *plan) {
  pki_ca_free(plan->ca);
  pki_pem_clear(&plan->server);
  for (size_t i = 0; i < plan->n_clients; i++)
    pki_pem_clear(&plan->clients[i]);
  free(plan->clients);
}

/* Everything in memory first: a bad extra SAN fails before any file. */
static int init_generate(const pki_init_opts *opts, const char *td, const char *host,
                         const char *const *clients, init_plan *plan, au_error *err) {
  int r = pki_ca_create(td, &plan->ca, err);
  if (r < 0) return r;
  pki_issue_opts server_opts = {.dns = opts->server_dns, .ips = opts->server_ips};
  r = pki_ca_issue(plan->ca, PKI_KIND_SERVER, host, NULL, &server_opts, &plan->server, err);
  if (r < 0) return r;
  size_t n = 0;
  while (clients[n])
    n++;
  plan->clients = calloc(n ? n : 1, sizeof(pki_pem));
  if (!plan->clients) return au_error_set(err, -ENOMEM, "out of memory");
  for (; plan->n_clients < n; plan->n_clients++) {
    r = pki_ca_issue(plan->ca, PKI_KIND_CLIENT, clients[plan->n_clients], NULL, NULL,
                     &plan->clients[plan->n_clients], err);
    if (r < 0) return r;
  }
  return 0;
}

static int init_write(const char *dir, const char *const *clients, const init_plan *plan,
                      au_error *err) {
  int r = write_pair(dir, "server", &plan->server, true, err);
  for (size_t i = 0; r == 0 && i < plan->n_clients; i++) {
    char stem[STEM_MAX];
    r = pki_file_stem(PKI_KIND_CLIENT, clients[i], stem, sizeof(stem), err);
    if (r == 0) r = write_pair(dir, stem, &plan->clients[i], true, err);
  }
  if (r < 0) return r;
  _cleanup_secret_ char *ca_key = NULL;
  if ((r = pki_key_to_pem(plan->ca->key, &ca_key, err)) < 0) return r;
  pki_pem ca_pem = {.cert = plan->ca->cert_pem, .key = ca_key};
  /* ca.crt last: its presence means the directory is complete. */
  return write_pair(dir, "ca", &ca_pem, true, err);
}

int pki_init(const pki_init_opts *opts, au_error *err) {
  static const pki_init_opts no_opts;
  if (!opts) opts = &no_opts;
  ERR_clear_error();
  const char *dir = opts->dir ? opts->dir : PKI_DEFAULT_DIR;
  const char *td = opts->trust_domain ? opts->trust_domain : PKI_DEFAULT_TRUST_DOMAIN;
  const char *const *clients = opts->clients ? opts->clients : default_clients;
  char host[HOST_NAME_MAX + 1];
  int r;
  if ((r = pki_validate_trust_domain("trust domain", td, err)) < 0 ||
      (r = resolve_hostname(opts->hostname, host, sizeof(host), err)) < 0)
    return r;
  for (const char *const *c = clients; *c; c++)
    if ((r = name_validate_label("user name", *c, err)) < 0) return r;

  if ((r = mkdir_p(dir, err)) < 0) return au_error_prefix(err, "pki init");
  _cleanup_close_ int lock = lock_dir(dir, err);
  if (lock < 0) return au_error_prefix(err, "pki init");
  if (!opts->force && file_exists(dir, "ca.crt"))
    return au_error_set(err, -EEXIST, "%s/ca.crt already exists", dir);

  _cleanup_(init_plan_clear) init_plan plan = {0};
  if ((r = init_generate(opts, td, host, clients, &plan, err)) < 0 ||
      (r = init_write(dir, clients, &plan, err)) < 0)
    return au_error_prefix(err, "pki init %s", dir);
  sync_dir(dir);
  log_debug("pki: created PKI in %s for trust domain %s", dir, td);
  return 0;
}

/* --- pki issue --- */

int pki_issue(const char *dir, pki_kind kind, const char *name, const char *trust_domain,
              const pki_issue_opts *opts, au_error *err) {
  ERR_clear_error();
  if (!dir) dir = PKI_DEFAULT_DIR;
  const char *out = opts && opts->out_dir ? opts->out_dir : dir;
  bool force = opts && opts->force;
  char stem[STEM_MAX];
  int r = pki_file_stem(kind, name, stem, sizeof(stem), err);
  if (r < 0) return r;
  if (trust_domain && (r = pki_validate_trust_domain("trust domain", trust_domain, err)) < 0)
    return r;

  _cleanup_ca_ pki_ca *ca = NULL;
  if ((r = pki_ca_load(dir, &ca, err)) < 0) return r;
  if ((r = mkdir_p(out, err)) < 0) return r;
  _cleanup_close_ int lock = lock_dir(out, err);
  if (lock < 0) return lock;
  char crt[NAME_MAX + 1], key[NAME_MAX + 1];
  snprintf(crt, sizeof(crt), "%s.crt", stem);
  snprintf(key, sizeof(key), "%s.key", stem);
  if (!force && (file_exists(out, crt) || file_exists(out, key)))
    return au_error_set(err, -EEXIST, "%s/%s already exists", out,
                        file_exists(out, crt) ? crt : key);

  _cleanup_pem_ pki_pem pem = {0};
  if ((r = pki_ca_issue(ca, kind, name, trust_domain, opts, &pem, err)) < 0) return r;
  if ((r = write_pair(out, stem, &pem, force, err)) < 0)
    return au_error_prefix(err, "issue %s", stem);
  sync_dir(out);
  return 0;
}

/* --- reading certificates --- */

int pki_cert_info_load(const char *cert_path, pki_cert_info *ret, au_error *err) {
  ERR_clear_error();
  memset(ret, 0, sizeof(*ret));
  _cleanup_fclose_ FILE *f = fopen(cert_path, "re");
  if (!f) return au_error_errno(err, -errno, "read %s", cert_path);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  if (!x) {
    /* Not PEM: perhaps DER. */
    ERR_clear_error();
    rewind(f);
    x = d2i_X509_fp(f, NULL);
  }
  if (!x) {
    ERR_clear_error();
    return au_error_set(err, -EINVAL, "%s: not a certificate (PEM or DER)", cert_path);
  }
  int r = pki_cert_info_from_x509(x, ret, err);
  X509_free(x);
  return r < 0 ? au_error_prefix(err, "%s", cert_path) : 0;
}

int pki_cert_info_from_pem(const char *pem, pki_cert_info *ret, au_error *err) {
  ERR_clear_error();
  memset(ret, 0, sizeof(*ret));
  BIO *bio = BIO_new_mem_buf(pem, -1);
  X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  if (!x) {
    ERR_clear_error();
    return au_error_set(err, -EINVAL, "not a PEM certificate");
  }
  int r = pki_cert_info_from_x509(x, ret, err);
  X509_free(x);
  return r;
}

int pki_cert_spiffe_id(const char *cert_path, char *buf, size_t size, au_error *err) {
  pki_cert_info info;
  int r = pki_cert_info_load(cert_path, &info, err);
  if (r < 0) return r;
  int uris = 0;
  for (char **s = info.sans; s && *s; s++)
    if (strncmp(*s, "URI:", 4) == 0) uris++;
  if (!info.spiffe_id[0])
    r = uris > 1 ? au_error_set(err, -EINVAL,
                                "%s: %d URI SANs; a SPIFFE identity needs "
                                "exactly one",
                                cert_path, uris)
                 : au_error_set(err, -ENOENT, "%s: no spiffe:// URI SAN", cert_path);
  else if (strlen(info.spiffe_id) >= size)
    r = au_error_set(err, -ENAMETOOLONG, "%s: SPIFFE ID too long", cert_path);
  else
    snprintf(buf, size, "%s", info.spiffe_id);
  pki_cert_info_clear(&info);
  return r;
}
