/* The PKI module against real OpenSSL: files and modes on disk, chains that
 * verify, SANs and SPIFFE IDs, refusals, and a mutual TLS handshake with
 * the issued certificates (in memory, through a BIO pair). */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki/pki.h"

#define TD "test.example"

static char base[64];
static char dir[128];

static void path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", dir, name);
}

static int make_base(void **state) {
  (void)state;
  snprintf(base, sizeof(base), "/tmp/test_pki.XXXXXX");
  if (!mkdtemp(base)) return -1;
  /* A directory that does not exist yet: pki_init creates it. */
  snprintf(dir, sizeof(dir), "%s/etc/pki", base);
  return 0;
}

static int remove_base(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
  return system(cmd) == 0 ? 0 : -1;
}

static int init_default(void) {
  static const char *const clients[] = {"admin", "alice", NULL};
  pki_init_opts opts = {.dir = dir, .trust_domain = TD, .hostname = "Node1", .clients = clients};
  au_error err = {0};
  int r = pki_init(&opts, &err);
  if (r < 0) fprintf(stderr, "pki_init: %s\n", err.msg);
  return r;
}

static int setup_pki(void **state) {
  if (make_base(state) < 0) return -1;
  return init_default() == 0 ? 0 : -1;
}

static X509 *load_cert(const char *name) {
  char p[256];
  path(p, sizeof(p), name);
  FILE *f = fopen(p, "re");
  assert_non_null(f);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(x);
  return x;
}

static EVP_PKEY *load_key(const char *name) {
  char p[256];
  path(p, sizeof(p), name);
  FILE *f = fopen(p, "re");
  assert_non_null(f);
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(k);
  return k;
}

/* X509_verify_cert against ca.crt, for a TLS role (X509_PURPOSE_*). */
static int verify(X509 *leaf, int purpose) {
  X509 *ca = load_cert("ca.crt");
  X509_STORE *store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, NULL);
  X509_STORE_CTX_set_purpose(ctx, purpose);
  int ok = X509_verify_cert(ctx);
  if (ok != 1)
    fprintf(stderr, "verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(ca);
  return ok;
}

static int verify_file(const char *name, int purpose) {
  X509 *x = load_cert(name);
  int ok = verify(x, purpose);
  X509_free(x);
  return ok;
}

static mode_t file_mode(const char *name) {
  char p[256];
  struct stat st;
  path(p, sizeof(p), name);
  assert_int_equal(stat(p, &st), 0);
  return st.st_mode & 07777;
}

static bool has_san(const pki_cert_info *info, const char *san) {
  for (char **s = info->sans; s && *s; s++)
    if (strcmp(*s, san) == 0) return true;
  return false;
}

static int count_prefix(const pki_cert_info *info, const char *prefix) {
  int n = 0;
  for (char **s = info->sans; s && *s; s++)
    if (strncmp(*s, prefix, strlen(prefix)) == 0) n++;
  return n;
}

static void load_info(const char *name, pki_cert_info *info) {
  char p[256];
  au_error err = {0};
  path(p, sizeof(p), name);
  assert_int_equal(pki_cert_info_load(p, info, &err), 0);
}

static void test_files_and_modes(void **state) {
  (void)state;
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700);
  const char *keys[] = {"ca.key", "server.key", "client-admin.key", "client-alice.key"};
  const char *certs[] = {"ca.crt", "server.crt", "client-admin.crt", "client-alice.crt"};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(file_mode(keys[i]), 0600);
    assert_int_equal(file_mode(certs[i]), 0644);
  }
  /* No temporary file is left behind. */
  DIR *d = opendir(dir);
  assert_non_null(d);
  int entries = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    assert_int_not_equal(e->d_name[0], '.');
    entries++;
  }
  closedir(d);
  assert_int_equal(entries, 8);
}

static void test_modes_ignore_umask(void **state) {
  (void)state;
  /* A permissive umask must not widen a key, a strict one not hide a cert. */
  mode_t old = umask(0);
  au_error err = {0};
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "umask0", NULL, NULL, &err), 0);
  umask(0777);
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "umask777", NULL, NULL, &err), 0);
  umask(old);
  assert_int_equal(file_mode("client-umask0.key"), 0600);
  assert_int_equal(file_mode("client-umask0.crt"), 0644);
  assert_int_equal(file_mode("client-umask777.key"), 0600);
  assert_int_equal(file_mode("client-umask777.crt"), 0644);
}

static void test_chains_verify(void **state) {
  (void)state;
  assert_int_equal(verify_file("server.crt", X509_PURPOSE_SSL_SERVER), 1);
  /* A parent auraed dials children with its server identity. */
  assert_int_equal(verify_file("server.crt", X509_PURPOSE_SSL_CLIENT), 1);
  assert_int_equal(verify_file("client-admin.crt", X509_PURPOSE_SSL_CLIENT), 1);
  assert_int_equal(verify_file("client-alice.crt", X509_PURPOSE_SSL_CLIENT), 1);
  /* A user's certificate cannot pose as a server. */
  assert_int_not_equal(verify_file("client-admin.crt", X509_PURPOSE_SSL_SERVER), 1);
  /* Each key belongs to its certificate. */
  const char *pairs[][2] = {
      {"ca.crt", "ca.key"}, {"server.crt", "server.key"}, {"client-admin.crt", "client-admin.key"}};
  for (size_t i = 0; i < 3; i++) {
    X509 *x = load_cert(pairs[i][0]);
    EVP_PKEY *k = load_key(pairs[i][1]);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    EVP_PKEY_free(k);
    X509_free(x);
  }
}

static void test_ca_certificate(void **state) {
  (void)state;
  pki_cert_info info;
  load_info("ca.crt", &info);
  assert_true(info.is_ca);
  assert_non_null(strstr(info.subject, "CN=aurae CA " TD));
  assert_string_equal(info.subject, info.issuer);
  assert_int_equal(count_prefix(&info, ""), 0);
  /* About ten years. */
  assert_true(info.not_after - info.not_before > 3649L * 86400);
  pki_cert_info_clear(&info);
  X509 *ca = load_cert("ca.crt");
  /* pathlen 0: it may sign leaves only. */
  assert_int_equal(X509_get_pathlen(ca), 0);
  assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
  X509_free(ca);
  char id[256];
  au_error err = {0};
  char p[256];
  path(p, sizeof(p), "ca.crt");
  assert_int_equal(pki_cert_spiffe_id(p, id, sizeof(id), &err), -ENOENT);
}

static void test_server_sans(void **state) {
  (void)state;
  pki_cert_info info;
  load_info("server.crt", &info);
  assert_false(info.is_ca);
  /* The hostname is lowercased: one spelling for one identity. */
  assert_non_null(strstr(info.subject, "CN=node1"));
  assert_true(has_san(&info, "DNS:localhost"));
  assert_true(has_san(&info, "DNS:node1"));
  assert_true(has_san(&info, "IP:::1"));
  assert_true(has_san(&info, "IP:127.0.0.1"));
  assert_int_equal(count_prefix(&info, "URI:"), 1);
  assert_true(has_san(&info, "URI:spiffe://" TD "/auraed/node1"));
  assert_string_equal(info.spiffe_id, "spiffe://" TD "/auraed/node1");
  assert_true(info.not_after - info.not_before >= 365L * 86400);
  assert_true(info.not_before <= time(NULL));
  assert_int_equal(strlen(info.serial), 32);
  pki_cert_info_clear(&info);
}

static void test_client_sans(void **state) {
  (void)state;
  pki_cert_info info;
  load_info("client-alice.crt", &info);
  assert_non_null(strstr(info.subject, "CN=alice"));
  assert_int_equal(count_prefix(&info, "URI:"), 1);
  assert_int_equal(count_prefix(&info, "DNS:"), 0);
  assert_string_equal(info.spiffe_id, "spiffe://" TD "/user/alice");
  pki_cert_info_clear(&info);

  char id[256], p[256];
  au_error err = {0};
  path(p, sizeof(p), "client-admin.crt");
  assert_int_equal(pki_cert_spiffe_id(p, id, sizeof(id), &err), 0);
  assert_string_equal(id, "spiffe://" TD "/user/admin");
  assert_int_equal(pki_cert_spiffe_id(p, id, 10, &err), -ENAMETOOLONG);
}

static void test_serials_differ(void **state) {
  (void)state;
  pki_cert_info a, b;
  load_info("client-admin.crt", &a);
  load_info("client-alice.crt", &b);
  assert_string_not_equal(a.serial, b.serial);
  pki_cert_info_clear(&a);
  pki_cert_info_clear(&b);
}

static char *slurp(const char *name) {
  char p[256];
  path(p, sizeof(p), name);
  FILE *f = fopen(p, "re");
  assert_non_null(f);
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, f);
  assert_true(n > 0);
  fclose(f);
  return buf;
}

static void test_init_twice(void **state) {
  (void)state;
  char *before = slurp("ca.crt");
  pki_init_opts opts = {.dir = dir, .trust_domain = TD, .hostname = "node1"};
  au_error err = {0};
  assert_int_equal(pki_init(&opts, &err), -EEXIST);
  assert_non_null(strstr(err.msg, "ca.crt already exists"));
  char *after = slurp("ca.crt");
  assert_string_equal(before, after);
  free(after);

  /* force makes a new CA, and the old client certificates stop verifying. */
  opts.force = true;
  assert_int_equal(pki_init(&opts, &err), 0);
  after = slurp("ca.crt");
  assert_string_not_equal(before, after);
  free(after);
  free(before);
  assert_int_equal(verify_file("client-admin.crt", X509_PURPOSE_SSL_CLIENT), 1);
  assert_int_not_equal(verify_file("client-alice.crt", X509_PURPOSE_SSL_CLIENT), 1);
}

static void test_bad_names(void **state) {
  (void)state;
  char fresh[160];
  snprintf(fresh, sizeof(fresh), "%s/never", base);
  au_error err = {0};

  static const char *const bad_user[] = {"admin", "Bad_Name", NULL};
  pki_init_opts opts = {.dir = fresh, .hostname = "h", .clients = bad_user};
  assert_int_equal(pki_init(&opts, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "user name"));

  const char *bad_tds[] = {"Example.com", "a..b", "-a.com", ".a", "a.", "spiffe://x", "a/b", ""};
  opts.clients = NULL;
  for (size_t i = 0; i < sizeof(bad_tds) / sizeof(bad_tds[0]); i++) {
    opts.trust_domain = bad_tds[i];
    au_error_clear(&err);
    assert_int_equal(pki_init(&opts, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "trust domain"));
  }
  opts.trust_domain = NULL;
  opts.hostname = "bad host";
  assert_int_equal(pki_init(&opts, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "hostname"));
  /* Refused before touching the disk. */
  struct stat st;
  assert_int_equal(stat(fresh, &st), -1);

  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "../x", NULL, NULL, &err), -EINVAL);
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "ok", "Bad..td", NULL, &err), -EINVAL);
  assert_int_equal(pki_issue(dir, PKI_KIND_INSTANCE, "a//b", NULL, NULL, &err), -EINVAL);
}

static void test_issue_client(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "bob", NULL, NULL, &err), 0);
  assert_int_equal(file_mode("client-bob.key"), 0600);
  assert_int_equal(verify_file("client-bob.crt", X509_PURPOSE_SSL_CLIENT), 1);
  pki_cert_info info;
  load_info("client-bob.crt", &info);
  /* The trust domain comes from the CA. */
  assert_string_equal(info.spiffe_id, "spiffe://" TD "/user/bob");
  pki_cert_info_clear(&info);

  char *before = slurp("client-bob.key");
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "bob", NULL, NULL, &err), -EEXIST);
  char *after = slurp("client-bob.key");
  assert_string_equal(before, after);
  free(after);
  pki_issue_opts force = {.force = true};
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "bob", NULL, &force, &err), 0);
  after = slurp("client-bob.key");
  assert_string_not_equal(before, after);
  free(after);
  free(before);

  /* Into another directory, for another trust domain. */
  char out[160];
  snprintf(out, sizeof(out), "%s/out", base);
  pki_issue_opts o = {.out_dir = out};
  assert_int_equal(pki_issue(dir, PKI_KIND_CLIENT, "carol", "other.test", &o, &err), 0);
  char p[200], id[256];
  snprintf(p, sizeof(p), "%s/client-carol.crt", out);
  assert_int_equal(pki_cert_spiffe_id(p, id, sizeof(id), &err), 0);
  assert_string_equal(id, "spiffe://other.test/user/carol");
}

static void test_issue_instance(void **state) {
  (void)state;
  au_error err = {0};
  assert_int_equal(pki_issue(dir, PKI_KIND_INSTANCE, "pod-a/vm1", NULL, NULL, &err), 0);
  assert_int_equal(file_mode("instance-pod-a.vm1.key"), 0600);
  assert_int_equal(verify_file("instance-pod-a.vm1.crt", X509_PURPOSE_SSL_SERVER), 1);
  assert_int_equal(verify_file("instance-pod-a.vm1.crt", X509_PURPOSE_SSL_CLIENT), 1);
  pki_cert_info info;
  load_info("instance-pod-a.vm1.crt", &info);
  assert_string_equal(info.spiffe_id, "spiffe://" TD "/instance/pod-a/vm1");
  assert_true(has_san(&info, "DNS:localhost"));
  assert_int_equal(count_prefix(&info, "URI:"), 1);
  pki_cert_info_clear(&info);
}

static void test_issue_in_memory(void **state) {
  (void)state;
  au_error err = {0};
  pki_ca *ca = NULL;
  assert_int_equal(pki_ca_load(dir, &ca, &err), 0);
  assert_string_equal(pki_ca_trust_domain(ca), TD);
  assert_non_null(strstr(pki_ca_cert_pem(ca), "BEGIN CERTIFICATE"));

  static const char *const dns[] = {"node1.example.org", "localhost", NULL};
  static const char *const ips[] = {"fe80::1", "192.0.2.7", NULL};
  pki_issue_opts o = {.dns = dns, .ips = ips, .days = 2};
  pki_pem pem = {0};
  assert_int_equal(pki_ca_issue(ca, PKI_KIND_INSTANCE, "web", NULL, &o, &pem, &err), 0);
  assert_non_null(strstr(pem.key, "BEGIN PRIVATE KEY"));
  BIO *bio = BIO_new_mem_buf(pem.cert, -1);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  assert_non_null(x);
  assert_int_equal(verify(x, X509_PURPOSE_SSL_SERVER), 1);
  /* Extra SANs are matched the way a TLS client matches them. */
  assert_int_equal(X509_check_host(x, "node1.example.org", 0, 0, NULL), 1);
  assert_int_equal(X509_check_ip_asc(x, "fe80::1", 0), 1);
  assert_int_equal(X509_check_ip_asc(x, "192.0.2.7", 0), 1);
  assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
  pki_cert_info info;
  assert_int_equal(pki_cert_info_from_pem(pem.cert, &info, &err), 0);
  /* "localhost" is not repeated. */
  assert_int_equal(count_prefix(&info, "DNS:localhost"), 1);
  assert_true(info.not_after - info.not_before < 3L * 86400);
  pki_cert_info_clear(&info);
  X509_free(x);
  pki_pem_clear(&pem);

  static const char *const scoped[] = {"fe80::1%tap0", NULL};
  pki_issue_opts bad = {.ips = scoped};
  assert_int_equal(pki_ca_issue(ca, PKI_KIND_INSTANCE, "web", NULL, &bad, &pem, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "scope"));
  static const char *const bad_dns[] = {"a,DNS:evil", NULL};
  pki_issue_opts bad2 = {.dns = bad_dns};
  assert_int_equal(pki_ca_issue(ca, PKI_KIND_SERVER, "h", NULL, &bad2, &pem, &err), -EINVAL);
  pki_ca_free(ca);
}

static void test_ca_key_mismatch(void **state) {
  (void)state;
  char other[160], cmd[512];
  snprintf(other, sizeof(other), "%s/other", base);
  pki_init_opts opts = {.dir = other, .hostname = "h"};
  au_error err = {0};
  assert_int_equal(pki_init(&opts, &err), 0);
  char id[256], p[200];
  snprintf(p, sizeof(p), "%s/server.crt", other);
  assert_int_equal(pki_cert_spiffe_id(p, id, sizeof(id), &err), 0);
  assert_string_equal(id, "spiffe://" PKI_DEFAULT_TRUST_DOMAIN "/auraed/h");
  snprintf(cmd, sizeof(cmd), "cp '%s/ca.key' '%s/ca.key'", dir, other);
  assert_int_equal(system(cmd), 0);
  pki_ca *ca = NULL;
  assert_int_equal(pki_ca_load(other, &ca, &err), -EINVAL);
  assert_non_null(strstr(err.msg, "does not belong"));
  snprintf(p, sizeof(p), "%s/missing", base);
  assert_int_equal(pki_ca_load(p, &ca, &err), -ENOENT);
  assert_int_equal(pki_issue(p, PKI_KIND_CLIENT, "x", NULL, NULL, &err), -ENOENT);
}

/* --- a real mutual TLS handshake with the issued files --- */

static SSL_CTX *tls_ctx(bool server, const char *crt, const char *key) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  char p[256], ca[256];
  path(ca, sizeof(ca), "ca.crt");
  assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
  if (crt) {
    path(p, sizeof(p), crt);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM), 1);
    path(p, sizeof(p), key);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM), 1);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return ctx;
}

/* Drive both ends over a BIO pair; true when both finish the handshake. */
static bool handshake_with(const char *server_crt, const char *server_key, const char *client_crt,
                           const char *client_key, const char *host) {
  SSL_CTX *sctx = tls_ctx(true, server_crt, server_key);
  SSL_CTX *cctx = tls_ctx(false, client_crt, client_key);
  SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
  SSL_set1_host(c, host);
  BIO *sb, *cb;
  assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
  SSL_set_bio(s, sb, sb);
  SSL_set_bio(c, cb, cb);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  bool sdone = false, cdone = false, failed = false;
  for (int i = 0; i < 100 && !(sdone && cdone) && !failed; i++) {
    if (!cdone) {
      int r = SSL_do_handshake(c);
      if (r == 1)
        cdone = true;
      else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
        failed = true;
    }
    if (!sdone) {
      int r = SSL_do_handshake(s);
      if (r == 1)
        sdone = true;
      else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
        failed = true;
    }
  }
  /* TLS 1.3: the server checks the client certificate after the client
   * thinks it is done; a byte from the server proves it accepted. */
  if (!failed && sdone && cdone) {
    char b = 'x';
    failed = SSL_write(s, &b, 1) != 1 || SSL_read(c, &b, 1) != 1;
  }
  SSL_free(s);
  SSL_free(c);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return !failed && sdone && cdone;
}

static bool handshake(const char *client_crt, const char *client_key, const char *host) {
  return handshake_with("server.crt", "server.key", client_crt, client_key, host);
}

static void test_mutual_tls(void **state) {
  (void)state;
  assert_true(handshake("client-admin.crt", "client-admin.key", "localhost"));
  assert_true(handshake("client-admin.crt", "client-admin.key", "node1"));
  /* No client certificate, or a server name not in the certificate. */
  assert_false(handshake(NULL, NULL, "localhost"));
  assert_false(handshake("client-admin.crt", "client-admin.key", "example.org"));
  /* A client certificate is not a server certificate (its CN would match
   * the name: the extendedKeyUsage is what refuses it). */
  assert_false(handshake_with("client-alice.crt", "client-alice.key", "client-admin.crt",
                              "client-admin.key", "alice"));
  /* Two instances authenticate each other both ways. */
  assert_true(handshake_with("instance-pod-a.vm1.crt", "instance-pod-a.vm1.key", "server.crt",
                             "server.key", "localhost"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_files_and_modes),
      cmocka_unit_test(test_modes_ignore_umask),
      cmocka_unit_test(test_chains_verify),
      cmocka_unit_test(test_ca_certificate),
      cmocka_unit_test(test_server_sans),
      cmocka_unit_test(test_client_sans),
      cmocka_unit_test(test_serials_differ),
      cmocka_unit_test(test_issue_client),
      cmocka_unit_test(test_issue_instance),
      cmocka_unit_test(test_issue_in_memory),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_bad_names),
      cmocka_unit_test(test_ca_key_mismatch),
      /* Last: it replaces the CA. */
      cmocka_unit_test(test_init_twice),
  };
  return cmocka_run_group_tests(tests, setup_pki, remove_base);
}
