/* Shared between pki.c (files, init, issue) and pki_x509.c (keys,
 * certificates, names). Not for use outside src/lib/pki/. */
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki.h"

struct pki_ca {
  X509 *cert;
  EVP_PKEY *key;
  char *cert_pem;
  char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
};

/* Fill err from OpenSSL's error queue (and clear it): -ENOMEM for an
 * allocation failure, else -EIO. */
int pki_ssl_error(au_error *err, const char *what);

/* A fresh EC P-256 key. */
int pki_key_generate(EVP_PKEY **ret, au_error *err);
/* PEM text (malloc'd, NUL-terminated) of a certificate or a PKCS#8 key. */
int pki_cert_to_pem(X509 *cert, char **ret, au_error *err);
int pki_key_to_pem(EVP_PKEY *key, char **ret, au_error *err);
/* Free key PEM text after wiping it. */
void pki_free_secret(char *s);

/* A new self-signed CA for trust domain td (validated by the caller). */
int pki_ca_create(const char *td, pki_ca **ret, au_error *err);
/* The trust domain stored in a CA certificate's subject. */
int pki_ca_read_trust_domain(X509 *cert, char *buf, size_t size, au_error *err);
/* Describe a certificate (pki_cert_info_load without the file). */
int pki_cert_info_from_x509(X509 *x, pki_cert_info *info, au_error *err);
