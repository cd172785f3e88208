/* Keys, certificates and names: everything in the PKI that is pure
 * OpenSSL and touches no file. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "names.h"
#include "pki_internal.h"

/* Certificates are backdated a little: a freshly booted microVM's clock,
 * or a second host's, may run behind the one that issued them. */
#define PKI_BACKDATE_SECONDS 300
#define PKI_CA_CN_PREFIX "aurae CA "
#define PKI_ORGANIZATION "aurae"

static void x509_freep(X509 **p) { X509_free(*p); }
static void pkey_freep(EVP_PKEY **p) { EVP_PKEY_free(*p); }
static void bio_freep(BIO **p) { BIO_free(*p); }
static void gens_freep(GENERAL_NAMES **p) { GENERAL_NAMES_free(*p); }
#define _cleanup_x509_ _cleanup_(x509_freep)
#define _cleanup_pkey_ _cleanup_(pkey_freep)
#define _cleanup_bio_ _cleanup_(bio_freep)
#define _cleanup_gens_ _cleanup_(gens_freep)

int pki_ssl_error(au_error *err, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char buf[256] = "unknown OpenSSL error";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  int code = ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE ? -ENOMEM : -EIO;
  ERR_clear_error();
  return au_error_set(err, code, "%s: %s", what, buf);
}

const char *pki_kind_name(pki_kind kind) {
  switch (kind) {
  case PKI_KIND_SERVER: return "server";
  case PKI_KIND_CLIENT: return "client";
  case PKI_KIND_INSTANCE: return "instance";
  }
  return "unknown";
}

/* The SPIFFE ID path segment before the name. */
static const char *kind_segment(pki_kind kind) {
  switch (kind) {
  case PKI_KIND_SERVER: return "auraed";
  case PKI_KIND_CLIENT: return "user";
  case PKI_KIND_INSTANCE: return "instance";
  }
  return NULL;
}

/* A lowercase DNS name: labels of [a-z0-9-] joined by single dots. The
 * SPIFFE spec wants trust domains lowercase; we hold hostnames to the same
 * rule so one identity has one spelling. */
static int validate_dns_name(const char *field, const char *s, au_error *err) {
  if (!s || !*s) return au_error_set(err, -EINVAL, "%s: missing", field);
  size_t len = strlen(s);
  if (len > 253)
    return au_error_set(err, -EINVAL, "%s: %zu characters, at most 253 allowed", field, len);
  const char *p = s;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    char label[AU_NAME_LABEL_MAX + 2];
    if (n == 0) return au_error_set(err, -EINVAL, "%s: \"%s\" has an empty label", field, s);
    if (n > AU_NAME_LABEL_MAX)
      return au_error_set(err, -EINVAL, "%s: \"%s\" has a label over %d characters", field, s,
                          AU_NAME_LABEL_MAX);
    memcpy(label, p, n);
    label[n] = '\0';
    int r = name_validate_label(field, label, err);
    if (r < 0) return r;
    if (!dot) break;
    p = dot + 1;
  }
  return 0;
}

int pki_validate_trust_domain(const char *field, const char *td, au_error *err) {
  return validate_dns_name(field, td, err);
}

int pki_validate_hostname(const char *field, const char *host, au_error *err) {
  return validate_dns_name(field, host, err);
}

static int validate_subject_name(pki_kind kind, const char *name, au_error *err) {
  switch (kind) {
  case PKI_KIND_SERVER: return validate_dns_name("hostname", name, err);
  case PKI_KIND_CLIENT: return name_validate_label("user name", name, err);
  case PKI_KIND_INSTANCE: return name_validate_path("instance name", name, err);
  }
  return au_error_set(err, -EINVAL, "certificate kind: unknown (%d)", (int)kind);
}

int pki_key_generate(EVP_PKEY **ret, au_error *err) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  if (!key) return pki_ssl_error(err, "generate EC P-256 key");
  *ret = key;
  return 0;
}

static int bio_to_string(BIO *bio, char **ret, au_error *err) {
  char *data = NULL;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0 || !data) return au_error_set(err, -EIO, "PEM encoding is empty");
  char *s = malloc((size_t)n + 1);
  if (!s) return au_error_set(err, -ENOMEM, "out of memory");
  memcpy(s, data, (size_t)n);
  s[n] = '\0';
  *ret = s;
  return 0;
}

int pki_cert_to_pem(X509 *cert, char **ret, au_error *err) {
  _cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());
  if (!bio || !PEM_write_bio_X509(bio, cert)) return pki_ssl_error(err, "encode certificate");
  return bio_to_string(bio, ret, err);
}

int pki_key_to_pem(EVP_PKEY *key, char **ret, au_error *err) {
  /* Secure heap memory is wiped when the BIO goes. */
  _cleanup_bio_ BIO *bio = BIO_new(BIO_s_secmem());
  if (!bio || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
    return pki_ssl_error(err, "encode private key");
  return bio_to_string(bio, ret, err);
}

void pki_free_secret(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

static int set_random_serial(X509 *x, au_error *err) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return pki_ssl_error(err, "random serial");
  /* Positive (DER integers are signed) and never zero or short. */
  bytes[0] = (unsigned char)((bytes[0] & 0x7f) | 0x40);
  BIGNUM *bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
  ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  int ok = serial && X509_set_serialNumber(x, serial);
  ASN1_INTEGER_free(serial);
  BN_free(bn);
  return ok ? 0 : pki_ssl_error(err, "set serial");
}

static int set_subject(X509 *x, const char *cn, au_error *err) {
  X509_NAME *name = X509_get_subject_name(x);
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)PKI_ORGANIZATION,
                                  -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
    return pki_ssl_error(err, "set subject");
  return 0;
}

/* Extensions whose values are our own constants go through OpenSSL's
 * config syntax; SANs, which carry names, are built as structures so no
 * input is ever parsed as config. */
static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, au_error *err) {
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
  int ok = ext && X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ok) {
    char what[128];
    snprintf(what, sizeof(what), "add extension %s", OBJ_nid2sn(nid));
    return pki_ssl_error(err, what);
  }
  return 0;
}

/* A bare certificate: version 3, serial, subject, issuer, validity, key. */
static int cert_new(const char *cn, int days, EVP_PKEY *key, X509 *issuer, X509 **ret,
                    au_error *err) {
  _cleanup_x509_ X509 *x = X509_new();
  if (!x) return pki_ssl_error(err, "new certificate");
  int r = set_random_serial(x, err);
  if (r < 0) return r;
  r = set_subject(x, cn, err);
  if (r < 0) return r;
  X509_NAME *issuer_name = issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x);
  if (!X509_set_version(x, X509_VERSION_3) || !X509_set_issuer_name(x, issuer_name) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_SECONDS) ||
      !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) || !X509_set_pubkey(x, key))
    return pki_ssl_error(err, "fill certificate");
  *ret = TAKE_PTR(x);
  return 0;
}

static int sign(X509 *x, EVP_PKEY *issuer_key, au_error *err) {
  if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) return pki_ssl_error(err, "sign certificate");
  return 0;
}

int pki_ca_create(const char *td, pki_ca **ret, au_error *err) {
  _cleanup_pkey_ EVP_PKEY *key = NULL;
  _cleanup_x509_ X509 *x = NULL;
  char cn[sizeof(PKI_CA_CN_PREFIX) + PKI_TRUST_DOMAIN_MAX];
  if (strlen(td) > PKI_TRUST_DOMAIN_MAX)
    return au_error_set(err, -EINVAL, "trust domain: too long");
  snprintf(cn, sizeof(cn), PKI_CA_CN_PREFIX "%s", td);
  int r = pki_key_generate(&key, err);
  if (r < 0) return r;
  r = cert_new(cn, PKI_CA_DAYS, key, NULL, &x, err);
  if (r < 0) return r;
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  /* pathlen 0: this CA signs leaves only, never another CA. */
  if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err)) < 0)
    return au_error_prefix(err, "create CA");
  r = sign(x, key, err);
  if (r < 0) return au_error_prefix(err, "create CA");

  pki_ca *ca = calloc(1, sizeof(*ca));
  if (!ca) return au_error_set(err, -ENOMEM, "out of memory");
  r = pki_cert_to_pem(x, &ca->cert_pem, err);
  if (r < 0) {
    free(ca);
    return r;
  }
  snprintf(ca->trust_domain, sizeof(ca->trust_domain), "%s", td);
  ca->cert = TAKE_PTR(x);
  ca->key = TAKE_PTR(key);
  *ret = ca;
  return 0;
}

int pki_ca_read_trust_domain(X509 *cert, char *buf, size_t size, au_error *err) {
  X509_NAME *name = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  ASN1_STRING *cn = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)) : NULL;
  const char *data = cn ? (const char *)ASN1_STRING_get0_data(cn) : NULL;
  size_t prefix = strlen(PKI_CA_CN_PREFIX);
  int len = cn ? ASN1_STRING_length(cn) : 0;
  if (!data || (size_t)len <= prefix || memchr(data, '\0', (size_t)len) ||
      strncmp(data, PKI_CA_CN_PREFIX, prefix) != 0)
    return au_error_set(err, -EINVAL,
                        "CA subject has no CN \"" PKI_CA_CN_PREFIX
                        "<trust domain>\" (not made by aer pki?); give the "
                        "trust domain explicitly");
  if ((size_t)len - prefix >= size)
    return au_error_set(err, -ENAMETOOLONG, "CA trust domain too long");
  memcpy(buf, data + prefix, (size_t)len - prefix);
  buf[(size_t)len - prefix] = '\0';
  int r = pki_validate_trust_domain("CA trust domain", buf, err);
  return r < 0 ? r : 0;
}

/* --- subject alternative names --- */

static bool gens_has(GENERAL_NAMES *gens, GENERAL_NAME *gn) {
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++)
    if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(gens, i), gn) == 0) return true;
  return false;
}

/* Takes value; skips a duplicate. */
static int gens_push(GENERAL_NAMES *gens, int type, ASN1_STRING *value, au_error *err) {
  GENERAL_NAME *gn = GENERAL_NAME_new();
  if (!gn) {
    ASN1_STRING_free(value);
    return pki_ssl_error(err, "new SAN");
  }
  GENERAL_NAME_set0_value(gn, type, value);
  if (gens_has(gens, gn)) {
    GENERAL_NAME_free(gn);
    return 0;
  }
  if (!sk_GENERAL_NAME_push(gens, gn)) {
    GENERAL_NAME_free(gn);
    return pki_ssl_error(err, "add SAN");
  }
  return 0;
}

static int gens_add_ia5(GENERAL_NAMES *gens, int type, const char *s, au_error *err) {
  ASN1_IA5STRING *v = ASN1_IA5STRING_new();
  if (!v || !ASN1_STRING_set(v, s, (int)strlen(s))) {
    ASN1_IA5STRING_free(v);
    return pki_ssl_error(err, "SAN string");
  }
  return gens_push(gens, type, v, err);
}

static int gens_add_ip(GENERAL_NAMES *gens, const char *ip, au_error *err) {
  unsigned char addr[16];
  int len;
  if (inet_pton(AF_INET, ip, addr) == 1)
    len = 4;
  else if (inet_pton(AF_INET6, ip, addr) == 1)
    len = 16;
  else
    /* A scope ("fe80::1%tap0") names a local interface, not an address a
     * certificate can carry; the bare address is what a client checks. */
    return au_error_set(err, -EINVAL, "IP SAN: \"%s\" is not an IPv4 or IPv6 address%s", ip,
                        strchr(ip, '%') ? " (leave out the %scope)" : "");
  ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
  if (!v || !ASN1_OCTET_STRING_set(v, addr, len)) {
    ASN1_OCTET_STRING_free(v);
    return pki_ssl_error(err, "SAN address");
  }
  return gens_push(gens, GEN_IPADD, v, err);
}

static int build_sans(pki_kind kind, const char *name, const char *spiffe_id,
                      const pki_issue_opts *opts, GENERAL_NAMES **ret, au_error *err) {
  _cleanup_gens_ GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
  if (!gens) return pki_ssl_error(err, "new SAN list");
  int r = 0;
  /* Servers and instances answer on their local socket and loopbacks,
   * where clients check "localhost" or the loopback address. */
  if (kind != PKI_KIND_CLIENT) {
    if ((r = gens_add_ia5(gens, GEN_DNS, "localhost", err)) < 0) return r;
    if (kind == PKI_KIND_SERVER && (r = gens_add_ia5(gens, GEN_DNS, name, err)) < 0) return r;
    if ((r = gens_add_ip(gens, "::1", err)) < 0 || (r = gens_add_ip(gens, "127.0.0.1", err)) < 0)
      return r;
  }
  for (const char *const *d = opts ? opts->dns : NULL; d && *d; d++) {
    if ((r = validate_dns_name("DNS SAN", *d, err)) < 0 ||
        (r = gens_add_ia5(gens, GEN_DNS, *d, err)) < 0)
      return r;
  }
  for (const char *const *ip = opts ? opts->ips : NULL; ip && *ip; ip++)
    if ((r = gens_add_ip(gens, *ip, err)) < 0) return r;
  /* Exactly one URI SAN: gRPC exposes peer_spiffe_id only then. */
  if ((r = gens_add_ia5(gens, GEN_URI, spiffe_id, err)) < 0) return r;
  *ret = TAKE_PTR(gens);
  return 0;
}

static int add_leaf_extensions(X509 *x, const pki_ca *ca, pki_kind kind, GENERAL_NAMES *gens,
                               au_error *err) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
  /* A parent auraed dials its children with its server identity, and a
   * spawned instance dials its parent: both get clientAuth too. */
  const char *eku = kind == PKI_KIND_CLIENT ? "clientAuth" : "serverAuth,clientAuth";
  int r;
  if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_ext_key_usage, eku, err)) < 0 ||
      (r = add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) < 0 ||
      (r = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err)) < 0)
    return r;
  if (!X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT))
    return pki_ssl_error(err, "add subjectAltName");
  return 0;
}

int pki_ca_issue(const pki_ca *ca, pki_kind kind, const char *name, const char *trust_domain,
                 const pki_issue_opts *opts, pki_pem *ret, au_error *err) {
  ERR_clear_error();
  const char *td = trust_domain ? trust_domain : ca->trust_domain;
  int r = validate_subject_name(kind, name, err);
  if (r < 0) return r;
  if ((r = pki_validate_trust_domain("trust domain", td, err)) < 0) return r;
  int days = opts && opts->days > 0 ? opts->days : PKI_LEAF_DAYS;

  char spiffe_id[PKI_SPIFFE_ID_MAX];
  int n = snprintf(spiffe_id, sizeof(spiffe_id), "spiffe://%s/%s/%s", td, kind_segment(kind), name);
  if (n < 0 || (size_t)n >= sizeof(spiffe_id))
    return au_error_set(err, -EINVAL, "SPIFFE ID too long");

  _cleanup_gens_ GENERAL_NAMES *gens = NULL;
  _cleanup_pkey_ EVP_PKEY *key = NULL;
  _cleanup_x509_ X509 *x = NULL;
  if ((r = build_sans(kind, name, spiffe_id, opts, &gens, err)) < 0 ||
      (r = pki_key_generate(&key, err)) < 0 ||
      (r = cert_new(name, days, key, ca->cert, &x, err)) < 0 ||
      (r = add_leaf_extensions(x, ca, kind, gens, err)) < 0 || (r = sign(x, ca->key, err)) < 0)
    return au_error_prefix(err, "issue %s certificate %s", pki_kind_name(kind), spiffe_id);

  pki_pem pem = {0};
  if ((r = pki_cert_to_pem(x, &pem.cert, err)) < 0 ||
      (r = pki_key_to_pem(key, &pem.key, err)) < 0) {
    pki_pem_clear(&pem);
    return r;
  }
  log_debug("pki: issued %s certificate %s", pki_kind_name(kind), spiffe_id);
  *ret = pem;
  return 0;
}

void pki_pem_clear(pki_pem *pem) {
  if (!pem) return;
  free(pem->cert);
  pki_free_secret(pem->key);
  pem->cert = pem->key = NULL;
}

/* --- reading certificates back --- */

/* ASN.1 strings are not NUL-terminated and may hold anything; keep
 * printable ASCII, mark the rest. */
static void copy_printable(char *dst, size_t size, const unsigned char *src, int len) {
  size_t j = 0;
  for (int i = 0; i < len && j + 1 < size; i++)
    dst[j++] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
  dst[j] = '\0';
}

static int format_san(const GENERAL_NAME *gn, char *buf, size_t size) {
  int type;
  void *value = GENERAL_NAME_get0_value(gn, &type);
  const ASN1_STRING *s = value;
  char text[1024];
  const char *prefix;
  switch (type) {
  case GEN_DNS: prefix = "DNS"; break;
  case GEN_URI: prefix = "URI"; break;
  case GEN_EMAIL: prefix = "email"; break;
  case GEN_IPADD: {
    int len = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    if ((len != 4 && len != 16) || !inet_ntop(len == 4 ? AF_INET : AF_INET6, d, text, sizeof(text)))
      snprintf(text, sizeof(text), "<%d bytes>", len);
    return snprintf(buf, size, "IP:%s", text);
  }
  default: return snprintf(buf, size, "other:<type %d>", type);
  }
  copy_printable(text, sizeof(text), ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
  return snprintf(buf, size, "%s:%s", prefix, text);
}

static int name_to_string(const X509_NAME *name, char *buf, size_t size, au_error *err) {
  _cleanup_bio_ BIO *bio = BIO_new(BIO_s_mem());
  if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
    return pki_ssl_error(err, "print name");
  char *data = NULL;
  long n = BIO_get_mem_data(bio, &data);
  copy_printable(buf, size, (const unsigned char *)data, (int)(n < 0 ? 0 : n));
  return 0;
}

static int read_sans(X509 *x, pki_cert_info *info, au_error *err) {
  _cleanup_gens_ GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int count = gens ? sk_GENERAL_NAME_num(gens) : 0;
  info->sans = calloc((size_t)count + 1, sizeof(char *));
  if (!info->sans) return au_error_set(err, -ENOMEM, "out of memory");
  int uris = 0;
  const char *uri = NULL;
  for (int i = 0; i < count; i++) {
    char text[1100];
    GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
    format_san(gn, text, sizeof(text));
    info->sans[i] = strdup(text);
    if (!info->sans[i]) return au_error_set(err, -ENOMEM, "out of memory");
    if (strncmp(text, "URI:", 4) == 0) {
      uris++;
      uri = info->sans[i] + 4;
    }
  }
  /* The same rule as gRPC's peer_spiffe_id. */
  if (uris == 1 && strncmp(uri, "spiffe://", 9) == 0)
    snprintf(info->spiffe_id, sizeof(info->spiffe_id), "%s", uri);
  return 0;
}

static time_t asn1_to_time(const ASN1_TIME *t) {
  struct tm tm;
  if (!ASN1_TIME_to_tm(t, &tm)) return (time_t)-1;
  return timegm(&tm);
}

int pki_cert_info_from_x509(X509 *x, pki_cert_info *info, au_error *err) {
  memset(info, 0, sizeof(*info));
  int r;
  if ((r = name_to_string(X509_get_subject_name(x), info->subject, sizeof(info->subject), err)) <
          0 ||
      (r = name_to_string(X509_get_issuer_name(x), info->issuer, sizeof(info->issuer), err)) < 0)
    return r;
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  snprintf(info->serial, sizeof(info->serial), "%s", hex ? hex : "?");
  OPENSSL_free(hex);
  BN_free(bn);
  info->not_before = asn1_to_time(X509_get0_notBefore(x));
  info->not_after = asn1_to_time(X509_get0_notAfter(x));
  info->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
  r = read_sans(x, info, err);
  if (r < 0) pki_cert_info_clear(info);
  return r;
}

void pki_cert_info_clear(pki_cert_info *info) {
  if (!info) return;
  cleanup_strvp(&info->sans);
  info->sans = NULL;
}
