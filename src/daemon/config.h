/* auraed's configuration: defaults, then the JSON config file, then flags.
 * The file format is documented in docs/auraed.conf.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define AURAED_DEFAULT_CONFIG "/etc/aurae/auraed.conf"
#define AURAED_MAX_LISTEN 16
#define AURAED_MAX_IDENTITIES 64

typedef struct authz_rules {
  /* Identities (SPIFFE IDs or certificate CNs); an entry ending in '*'
   * matches every identity with that prefix. */
  char *admin[AURAED_MAX_IDENTITIES];
  size_t n_admin;
  char *read_only[AURAED_MAX_IDENTITIES];
  size_t n_read_only;
  bool configured; /* the file had an "authorization" object */
} authz_rules;

typedef struct auraed_config {
  char *socket_path;    /* "" disables the Unix socket */
  unsigned socket_mode; /* default 0600 */
  char *socket_group;   /* optional; the socket gets this group */
  char *listen[AURAED_MAX_LISTEN];
  size_t n_listen;
  char *runtime_dir;
  char *library_dir;
  char *ca_crt, *server_crt, *server_key;
  char *vm_image_dirs[AURAED_MAX_LISTEN];
  size_t n_vm_image_dirs;
  authz_rules authz;
  size_t max_message_bytes;
  int max_concurrent_streams;
  int handshake_timeout_ms;
  int idle_timeout_ms;
  int shutdown_grace_ms;
  /* Keep one cell init ready ahead of RunCell (default on). */
  bool cell_spare_init;
  /* Each private tmpfs of a cell (/tmp, /var/tmp, /run, /dev/shm). */
  uint32_t cell_scratch_mb, cell_scratch_inodes;
  /* cell_id_pool: the host ids given to cells' user namespaces, one range
   * of CELL_IDS_PER_CELL ids for each top-level cell (cell/idpool.h). */
  uint32_t cell_id_pool_start;
  uint32_t cell_id_pool_cells;
  bool verbose;
  bool daemonize; /* --daemon: background, return when serving */
  char *log_file; /* --log-file, with --daemon */
} auraed_config;

void config_init_defaults(auraed_config *config);
/* Parses JSON text into config (fields present override). Unknown keys and
 * wrong types are errors naming the key. */
int config_parse(auraed_config *config, const char *json, const char *source, au_error *err);
/* Loads a file; a missing file is not an error when optional. */
int config_load(auraed_config *config, const char *path, bool optional, au_error *err);
/* Replace a string field, freeing the old value. */
int config_set_string(char **field, const char *value);
int config_add_listen(auraed_config *config, const char *address, au_error *err);
void config_free(auraed_config *config);

/* "1024", "4K", "4M", "1G" -> bytes. */
int config_parse_size(const char *text, size_t *ret);
