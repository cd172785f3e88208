/* The PKI behind auraed's mutual TLS, made with the OpenSSL 3 API.
 *
 * One CA per trust domain signs three kinds of leaf certificates, each with
 * exactly one URI SAN (gRPC only exposes peer_spiffe_id when there is
 * exactly one), which is the identity authorization looks at:
 *   server    spiffe://<td>/auraed/<hostname>  a host's auraed
 *   client    spiffe://<td>/user/<name>        a person or a script (aer)
 *   instance  spiffe://<td>/instance/<name>    a spawned auraed: it serves
 *                                              its parent and dials it back
 * Keys are EC P-256. A key file is never readable by anyone but its owner,
 * not even for a moment: it is created 0600 under a temporary name in the
 * target directory and renamed into place. Certificates are 0644.
 *
 * The trust domain is kept in the CA's subject (CN "aurae CA <td>"), so
 * issuing more certificates later needs only the CA directory.
 *
 * Functions are thread-safe (a loaded pki_ca may be shared by threads that
 * issue certificates from it). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "error.h"

#define PKI_DEFAULT_DIR "/etc/aurae/pki"
#define PKI_DEFAULT_TRUST_DOMAIN "aurae.local"
#define PKI_DEFAULT_CLIENT "admin"
#define PKI_CA_DAYS 3650
#define PKI_LEAF_DAYS 365
/* A trust domain is a DNS name: at most 255 characters (SPIFFE ID spec). */
#define PKI_TRUST_DOMAIN_MAX 255
/* "spiffe://" + trust domain + "/instance/" + a workload path. */
#define PKI_SPIFFE_ID_MAX 2048

typedef enum pki_kind {
  PKI_KIND_SERVER = 0,
  PKI_KIND_CLIENT,
  PKI_KIND_INSTANCE,
} pki_kind;

/* "server", "client", "instance". */
const char *pki_kind_name(pki_kind kind);

typedef struct pki_issue_opts {
  /* NULL-terminated lists of extra SANs, e.g. a TCP listener's name or
   * address ("fe80::1", "192.0.2.7"). May be NULL. */
  const char *const *dns;
  const char *const *ips;
  int days;            /* validity; 0: PKI_LEAF_DAYS */
  const char *out_dir; /* pki_issue only: where to write; NULL: the CA dir */
  bool force;          /* pki_issue only: replace existing files */
} pki_issue_opts;

typedef struct pki_init_opts {
  const char *dir;          /* NULL: PKI_DEFAULT_DIR */
  const char *trust_domain; /* NULL: PKI_DEFAULT_TRUST_DOMAIN */
  const char *hostname;     /* NULL: gethostname(), lowercased */
  /* NULL-terminated user names to issue client certificates for; NULL:
   * just PKI_DEFAULT_CLIENT. */
  const char *const *clients;
  /* Extra SANs for the server certificate (NULL-terminated, may be NULL). */
  const char *const *server_dns;
  const char *const *server_ips;
  bool force; /* replace an existing PKI (new CA: old certificates die) */
} pki_init_opts;

/* Create DIR (0700, parents 0755) and in it ca.crt, ca.key, server.crt,
 * server.key and client-<name>.{crt,key} for each client. Everything is
 * generated in memory first and ca.crt is written last, so a directory with
 * a ca.crt holds a complete PKI. If DIR/ca.crt exists and !force: -EEXIST
 * and nothing is touched. Bad names: -EINVAL naming the field. */
int pki_init(const pki_init_opts *opts, au_error *err);

/* Issue one certificate signed by DIR/ca.{crt,key} and write it as
 * <stem>.crt and <stem>.key in opts->out_dir (default DIR), where stem is
 * "server", "client-<name>" or "instance-<name with '/' as '.'>".
 * name: the hostname (server), a user name label (client) or a workload
 * path such as "pod-a/vm" (instance). trust_domain NULL: the CA's. Existing
 * files without opts->force: -EEXIST. */
int pki_issue(const char *dir, pki_kind kind, const char *name, const char *trust_domain,
              const pki_issue_opts *opts, au_error *err);

/* The file stem pki_issue uses for kind/name ("client-admin"). */
int pki_file_stem(pki_kind kind, const char *name, char *buf, size_t size, au_error *err);

/* In-memory issuing, for callers that do not want files (an instance's
 * identity goes into its initramfs). */
typedef struct pki_ca pki_ca;

typedef struct pki_pem {
  char *cert; /* PEM, NUL-terminated */
  char *key;  /* PEM (PKCS#8), NUL-terminated; wiped on clear */
} pki_pem;

int pki_ca_load(const char *dir, pki_ca **ret, au_error *err);
void pki_ca_free(pki_ca *ca);
/* The CA's trust domain (from its subject) and certificate as PEM; both
 * live as long as ca. */
const char *pki_ca_trust_domain(const pki_ca *ca);
const char *pki_ca_cert_pem(const pki_ca *ca);
/* trust_domain NULL: the CA's. opts may be NULL (out_dir/force unused). */
int pki_ca_issue(const pki_ca *ca, pki_kind kind, const char *name, const char *trust_domain,
                 const pki_issue_opts *opts, pki_pem *ret, au_error *err);
void pki_pem_clear(pki_pem *pem);

/* The SPIFFE ID (the single spiffe:// URI SAN) of the certificate in
 * cert_path: -ENOENT when it has none, -EINVAL when it has more than one. */
int pki_cert_spiffe_id(const char *cert_path, char *buf, size_t size, au_error *err);

/* What `aer pki show` prints. */
typedef struct pki_cert_info {
  char subject[512];
  char issuer[512];
  char serial[64]; /* hex */
  time_t not_before;
  time_t not_after;
  bool is_ca;
  char **sans;                       /* NULL-terminated: "DNS:localhost", "IP:::1", "URI:..." */
  char spiffe_id[PKI_SPIFFE_ID_MAX]; /* "" when none or ambiguous */
} pki_cert_info;

int pki_cert_info_load(const char *cert_path, pki_cert_info *ret, au_error *err);
/* The same for PEM text (e.g. from pki_ca_issue). */
int pki_cert_info_from_pem(const char *pem, pki_cert_info *ret, au_error *err);
void pki_cert_info_clear(pki_cert_info *info);

/* Validation, exported for the CLI and the daemon's config: 0 or -EINVAL
 * with a message naming field. */
int pki_validate_trust_domain(const char *field, const char *td, au_error *err);
int pki_validate_hostname(const char *field, const char *host, au_error *err);
