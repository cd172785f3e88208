/* The client config, Aurae's format (a TOML subset):
 *
 *   [auth]
 *   ca_crt = "~/.aurae/pki/ca.crt"
 *   client_crt = "~/.aurae/pki/client-admin.crt"
 *   client_key = "~/.aurae/pki/client-admin.key"
 *
 *   [system]
 *   socket = "/run/aurae/aurae.sock"
 *
 * Comments start with '#'. Values are double-quoted strings. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "client.h"

static char *expand_home(const char *value) {
  if (strncmp(value, "~/", 2) != 0) return strdup(value);
  const char *home = getenv("HOME");
  if (!home || !*home) home = "/root";
  char *out;
  if (asprintf(&out, "%s/%s", home, value + 2) < 0) return NULL;
  return out;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *end = s + strlen(s);
  while (end > s && isspace((unsigned char)end[-1]))
    *--end = '\0';
  return s;
}

static char **field_for(aer_client_config *c, const char *section, const char *key) {
  if (strcmp(section, "auth") == 0) {
    if (strcmp(key, "ca_crt") == 0) return &c->ca_crt;
    if (strcmp(key, "client_crt") == 0) return &c->client_crt;
    if (strcmp(key, "client_key") == 0) return &c->client_key;
    if (strcmp(key, "server_name") == 0) return &c->server_name;
    if (strcmp(key, "server_id") == 0) return &c->server_id;
  } else if (strcmp(section, "system") == 0) {
    if (strcmp(key, "socket") == 0) return &c->socket;
  }
  return NULL;
}

int aer_config_parse(const char *text, aer_client_config *c, au_error *err) {
  _cleanup_free_ char *copy = strdup(text);
  if (!copy) return au_error_set(err, -ENOMEM, "out of memory");
  char section[32] = "";
  int lineno = 0;
  /* strsep, not strtok: empty lines must count for the line numbers. */
  char *rest = copy;
  for (char *line = strsep(&rest, "\n"); line; line = strsep(&rest, "\n")) {
    lineno++;
    char *s = trim(line);
    if (*s == '\0' || *s == '#') continue;
    if (*s == '[') {
      char *close = strchr(s, ']');
      if (!close || close[1] != '\0' || close - s - 1 >= (long)sizeof(section))
        return au_error_set(err, -EINVAL, "line %d: bad section header", lineno);
      *close = '\0';
      snprintf(section, sizeof(section), "%s", trim(s + 1));
      if (strcmp(section, "auth") != 0 && strcmp(section, "system") != 0)
        return au_error_set(err, -EINVAL, "line %d: unknown section [%s] (auth, system)", lineno,
                            section);
      continue;
    }
    char *eq = strchr(s, '=');
    if (!eq) return au_error_set(err, -EINVAL, "line %d: expected key = \"value\"", lineno);
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    size_t vlen = strlen(value);
    if (vlen < 2 || value[0] != '"' || value[vlen - 1] != '"')
      return au_error_set(err, -EINVAL, "line %d: %s: value must be a double-quoted string", lineno,
                          key);
    value[vlen - 1] = '\0';
    value++;
    char **field = field_for(c, section, key);
    if (!field)
      return au_error_set(err, -EINVAL, "line %d: unknown key %s%s%s", lineno,
                          section[0] ? section : "", section[0] ? "." : "", key);
    free(*field);
    *field = expand_home(value);
    if (!*field) return au_error_set(err, -ENOMEM, "out of memory");
  }
  return 0;
}

int aer_config_load(const char *path, aer_client_config *c, au_error *err) {
  _cleanup_fclose_ FILE *f = fopen(path, "re");
  if (!f) return au_error_errno(err, -errno, "client config %s", path);
  char buf[64 * 1024];
  size_t n = fread(buf, 1, sizeof(buf), f);
  if (ferror(f)) return au_error_errno(err, -EIO, "client config %s: read", path);
  if (n == sizeof(buf))
    return au_error_set(err, -EFBIG, "client config %s: larger than 64 KiB", path);
  buf[n] = '\0';
  int r = aer_config_parse(buf, c, err);
  if (r < 0) au_error_prefix(err, "client config %s", path);
  return r;
}

void aer_config_clear(aer_client_config *c) {
  free(c->ca_crt);
  free(c->client_crt);
  free(c->client_key);
  free(c->socket);
  free(c->server_name);
  free(c->server_id);
  memset(c, 0, sizeof(*c));
}
