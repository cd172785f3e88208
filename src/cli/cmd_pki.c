/* aer pki: make and inspect the certificates behind auraed's mutual TLS.
 * Works on files only and never talks to a daemon, so it needs no client
 * config (it is what makes the files a client config points at).
 *
 *   aer pki init [--dir DIR] [--trust-domain TD] [--hostname H]
 *                [--client NAME]... [--dns NAME]... [--ip ADDR]...
 *                [--force | --if-missing]
 *   aer pki client NAME [--dir DIR] [--trust-domain TD] [--out DIR] [--force]
 *   aer pki server [--hostname H] [--dns NAME]... [--ip ADDR]... ...
 *   aer pki instance NAME ...
 *   aer pki show FILE...
 *
 * The trust domain of client/server/instance certificates defaults to the
 * CA's, which `aer pki init` keeps in the CA subject ("aurae CA <td>"). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "pki/pki.h"

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("aer pki: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

static void print_json(json_t *obj) {
  if (!obj) return;
  json_dumpf(obj, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  fputc('\n', stdout);
  json_decref(obj);
}

/* getopt_long with our own message for a bad option, naming the command. */
static int next_opt(const char *cmd, int argc, char **argv, const char *shorts,
                    const struct option *longs) {
  opterr = 0;
  int c = getopt_long(argc, argv, shorts, longs, NULL);
  if (c == '?') {
    const char *bad = argv[optind - 1];
    fail("%s: unknown option or missing value: %s (see aer pki %s --help)", cmd, bad ? bad : "?",
         cmd);
  }
  return c;
}

/* A NULL-terminated list of option values; argc bounds how many. */
typedef struct strlist {
  const char **items;
  size_t n;
} strlist;

static int strlist_init(strlist *l, int argc) {
  l->items = calloc((size_t)argc + 1, sizeof(char *));
  l->n = 0;
  return l->items ? 0 : -ENOMEM;
}
static void strlist_add(strlist *l, const char *s) { l->items[l->n++] = s; }
static void strlist_freep(strlist *l) { free(l->items); }

/* One line (or JSON object) for DIR/STEM.{crt,key}, read back from the
 * written certificate. */
static void describe_file(json_t *list, const char *dir, const char *stem) {
  char crt[PATH_MAX], key[PATH_MAX], id[PKI_SPIFFE_ID_MAX] = "";
  snprintf(crt, sizeof(crt), "%s/%s.crt", dir, stem);
  snprintf(key, sizeof(key), "%s/%s.key", dir, stem);
  au_error err = {0};
  if (pki_cert_spiffe_id(crt, id, sizeof(id), &err) < 0) id[0] = '\0';
  if (list) {
    json_t *o = json_object();
    json_object_set_new(o, "certificate", json_string(crt));
    json_object_set_new(o, "key", json_string(key));
    json_object_set_new(o, "spiffe_id", id[0] ? json_string(id) : json_null());
    json_array_append_new(list, o);
  } else {
    char files[NAME_MAX + 16];
    snprintf(files, sizeof(files), "%s.{crt,key}", stem);
    printf("  %-32s %s\n", files, id[0] ? id : "certificate authority");
  }
}

/* --- aer pki init --- */

static const char init_usage[] =
    "usage: aer pki init [options]\n"
    "Create a CA, a server certificate for this host and client certificates.\n"
    "\n"
    "  --dir DIR            where to write (default " PKI_DEFAULT_DIR ")\n"
    "  --trust-domain TD    SPIFFE trust domain (default " PKI_DEFAULT_TRUST_DOMAIN ")\n"
    "  --hostname H         the server's name (default: this host's name)\n"
    "  --client NAME        issue client-NAME.crt; repeatable (default: admin)\n"
    "  --dns NAME, --ip IP  extra server SANs; repeatable\n"
    "  --force              replace an existing PKI (a new CA: every old\n"
    "                       certificate stops working)\n"
    "  --if-missing         do nothing, successfully, when DIR has a CA\n"
    "\n"
    "Server: spiffe://TD/auraed/HOST with DNS:localhost, DNS:HOST, IP:::1,\n"
    "IP:127.0.0.1. Clients: spiffe://TD/user/NAME. Keys are EC P-256, mode 0600.\n";

static int pki_init_cmd(aer_ctx *ctx, int argc, char **argv) {
  static const struct option longs[] = {
      {"dir", required_argument, NULL, 'd'},      {"trust-domain", required_argument, NULL, 't'},
      {"hostname", required_argument, NULL, 'H'}, {"client", required_argument, NULL, 'c'},
      {"dns", required_argument, NULL, 'D'},      {"ip", required_argument, NULL, 'I'},
      {"force", no_argument, NULL, 'f'},          {"if-missing", no_argument, NULL, 'm'},
      {"help", no_argument, NULL, 'h'},           {0}};
  pki_init_opts opts = {.dir = PKI_DEFAULT_DIR};
  _cleanup_(strlist_freep) strlist clients = {0}, dns = {0}, ips = {0};
  if (strlist_init(&clients, argc) < 0 || strlist_init(&dns, argc) < 0 ||
      strlist_init(&ips, argc) < 0)
    return fail("out of memory");
  bool if_missing = false;
  int c;
  while ((c = next_opt("init", argc, argv, "", longs)) != -1) {
    switch (c) {
    case 'd': opts.dir = optarg; break;
    case 't': opts.trust_domain = optarg; break;
    case 'H': opts.hostname = optarg; break;
    case 'c': strlist_add(&clients, optarg); break;
    case 'D': strlist_add(&dns, optarg); break;
    case 'I': strlist_add(&ips, optarg); break;
    case 'f': opts.force = true; break;
    case 'm': if_missing = true; break;
    case 'h': fputs(init_usage, stdout); return 0;
    default: return 1;
    }
  }
  if (optind < argc) return fail("init: unexpected argument %s", argv[optind]);
  if (opts.force && if_missing) return fail("init: --force and --if-missing contradict each other");
  if (clients.n) opts.clients = clients.items;
  opts.server_dns = dns.items;
  opts.server_ips = ips.items;

  au_error err = {0};
  int r = pki_init(&opts, &err);
  bool json = ctx->output == AER_OUTPUT_JSON;
  if (r == -EEXIST && if_missing) {
    if (json) {
      json_t *o = json_object();
      json_object_set_new(o, "dir", json_string(opts.dir));
      json_object_set_new(o, "created", json_false());
      print_json(o);
    } else if (ctx->verbose) {
      fprintf(stderr, "aer pki: %s has a CA already; left unchanged\n", opts.dir);
    }
    return 0;
  }
  if (r == -EEXIST)
    return fail("%s (--force replaces the whole PKI, --if-missing keeps it)", err.msg);
  if (r < 0) return fail("%s", err.msg);

  const char *td = opts.trust_domain ? opts.trust_domain : PKI_DEFAULT_TRUST_DOMAIN;
  json_t *o = NULL, *list = NULL;
  if (json) {
    o = json_object();
    list = json_array();
    json_object_set_new(o, "dir", json_string(opts.dir));
    json_object_set_new(o, "created", json_true());
    json_object_set_new(o, "trust_domain", json_string(td));
  } else {
    printf("created a PKI in %s for trust domain %s\n", opts.dir, td);
  }
  describe_file(list, opts.dir, "ca");
  describe_file(list, opts.dir, "server");
  static const char *const default_clients[] = {PKI_DEFAULT_CLIENT, NULL};
  for (const char *const *n = clients.n ? clients.items : default_clients; *n; n++) {
    char stem[NAME_MAX];
    if (pki_file_stem(PKI_KIND_CLIENT, *n, stem, sizeof(stem), &err) == 0)
      describe_file(list, opts.dir, stem);
  }
  if (json) {
    json_object_set_new(o, "certificates", list);
    print_json(o);
  }
  return 0;
}

/* --- aer pki client|server|instance --- */

static void issue_usage(pki_kind kind) {
  const char *name = pki_kind_name(kind);
  if (kind == PKI_KIND_SERVER)
    printf("usage: aer pki server [options]\n"
           "Issue (replace with --force) DIR/server.{crt,key}:\n"
           "spiffe://TD/auraed/HOST, DNS:localhost, DNS:HOST, IP:::1, "
           "IP:127.0.0.1.\n\n"
           "  --hostname H         the server's name (default: this host's)\n");
  else
    printf("usage: aer pki %s NAME [options]\n"
           "Issue %s-NAME.{crt,key} signed by DIR/ca.{crt,key}: "
           "spiffe://TD/%s/NAME%s.\n\n",
           name, name, kind == PKI_KIND_CLIENT ? "user" : "instance",
           kind == PKI_KIND_INSTANCE ? ", server and client use" : "");
  printf("  --dir DIR            the CA directory (default " PKI_DEFAULT_DIR ")\n"
         "  --trust-domain TD    default: the CA's\n"
         "  --out DIR            write there instead of the CA directory\n"
         "  --dns NAME, --ip IP  extra SANs; repeatable\n"
         "  --days N             validity (default %d)\n"
         "  --force              replace existing files\n",
         PKI_LEAF_DAYS);
}

static int pki_issue_cmd(aer_ctx *ctx, pki_kind kind, int argc, char **argv) {
  static const struct option longs[] = {
      {"dir", required_argument, NULL, 'd'},      {"trust-domain", required_argument, NULL, 't'},
      {"hostname", required_argument, NULL, 'H'}, {"out", required_argument, NULL, 'o'},
      {"dns", required_argument, NULL, 'D'},      {"ip", required_argument, NULL, 'I'},
      {"days", required_argument, NULL, 'n'},     {"force", no_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},           {0}};
  const char *cmd = pki_kind_name(kind);
  const char *dir = PKI_DEFAULT_DIR, *td = NULL, *host = NULL;
  pki_issue_opts opts = {0};
  _cleanup_(strlist_freep) strlist dns = {0}, ips = {0};
  if (strlist_init(&dns, argc) < 0 || strlist_init(&ips, argc) < 0) return fail("out of memory");
  int c;
  while ((c = next_opt(cmd, argc, argv, "", longs)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 't': td = optarg; break;
    case 'H': host = optarg; break;
    case 'o': opts.out_dir = optarg; break;
    case 'D': strlist_add(&dns, optarg); break;
    case 'I': strlist_add(&ips, optarg); break;
    case 'n': {
      char *end;
      long days = strtol(optarg, &end, 10);
      if (*end || end == optarg || days < 1 || days > 36500)
        return fail("%s: --days: want 1 to 36500, got %s", cmd, optarg);
      opts.days = (int)days;
      break;
    }
    case 'f': opts.force = true; break;
    case 'h': issue_usage(kind); return 0;
    default: return 1;
    }
  }
  opts.dns = dns.items;
  opts.ips = ips.items;

  char sysname[256], hostbuf[256];
  const char *name;
  if (kind == PKI_KIND_SERVER) {
    if (optind < argc)
      return fail("server: unexpected argument %s (the name is --hostname)", argv[optind]);
    if (!host) {
      if (gethostname(sysname, sizeof(sysname)) < 0)
        return fail("server: gethostname: %s", strerror(errno));
      sysname[sizeof(sysname) - 1] = '\0';
      host = sysname;
    }
    /* pki_init lowercases too: one spelling for one identity. */
    snprintf(hostbuf, sizeof(hostbuf), "%s", host);
    for (char *p = hostbuf; *p; p++)
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    name = hostbuf;
  } else {
    if (host) return fail("%s: --hostname is for aer pki server", cmd);
    if (argc - optind != 1)
      return fail("%s: want exactly one NAME (see aer pki %s --help)", cmd, cmd);
    name = argv[optind];
  }

  au_error err = {0};
  int r = pki_issue(dir, kind, name, td, &opts, &err);
  if (r == -EEXIST) return fail("%s (--force replaces it)", err.msg);
  if (r < 0) return fail("%s", err.msg);

  char stem[NAME_MAX];
  if (pki_file_stem(kind, name, stem, sizeof(stem), &err) < 0) return fail("%s", err.msg);
  const char *out = opts.out_dir ? opts.out_dir : dir;
  if (ctx->output == AER_OUTPUT_JSON) {
    json_t *list = json_array();
    describe_file(list, out, stem);
    json_t *o = json_incref(json_array_get(list, 0));
    json_decref(list);
    print_json(o);
  } else {
    printf("issued in %s:\n", out);
    describe_file(NULL, out, stem);
  }
  return 0;
}

/* --- aer pki show --- */

static void format_time(time_t t, char *buf, size_t size) {
  struct tm tm;
  if (t == (time_t)-1 || !gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, size, "?");
}

static json_t *info_json(const char *file, const pki_cert_info *info, const char *before,
                         const char *after) {
  json_t *o = json_object();
  json_object_set_new(o, "file", json_string(file));
  json_object_set_new(o, "subject", json_string(info->subject));
  json_object_set_new(o, "issuer", json_string(info->issuer));
  json_object_set_new(o, "serial", json_string(info->serial));
  json_object_set_new(o, "not_before", json_string(before));
  json_object_set_new(o, "not_after", json_string(after));
  json_object_set_new(o, "ca", json_boolean(info->is_ca));
  json_t *sans = json_array();
  for (char **s = info->sans; s && *s; s++)
    json_array_append_new(sans, json_string(*s));
  json_object_set_new(o, "sans", sans);
  json_object_set_new(o, "spiffe_id",
                      info->spiffe_id[0] ? json_string(info->spiffe_id) : json_null());
  return o;
}

static void info_print(const char *file, const pki_cert_info *info, const char *before,
                       const char *after) {
  time_t now = time(NULL);
  const char *state = now < info->not_before  ? " (not yet valid)"
                      : now > info->not_after ? " (expired)"
                                              : "";
  printf("%s\n", file);
  printf("  subject:    %s\n", info->subject);
  printf("  issuer:     %s\n", info->issuer);
  printf("  serial:     %s\n", info->serial);
  printf("  valid:      %s to %s%s\n", before, after, state);
  printf("  ca:         %s\n", info->is_ca ? "yes" : "no");
  printf("  sans:      ");
  if (!info->sans || !info->sans[0]) printf(" (none)");
  for (char **s = info->sans; s && *s; s++)
    printf(" %s%s", *s, s[1] ? "," : "");
  printf("\n");
  if (info->spiffe_id[0]) printf("  spiffe id:  %s\n", info->spiffe_id);
}

static int pki_show_cmd(aer_ctx *ctx, int argc, char **argv) {
  static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {0}};
  int c;
  while ((c = next_opt("show", argc, argv, "", longs)) != -1) {
    if (c != 'h') return 1;
    fputs("usage: aer pki show FILE...\n"
          "Print a certificate's subject, issuer, validity, SANs and SPIFFE "
          "ID.\n",
          stdout);
    return 0;
  }
  if (optind >= argc) return fail("show: want a certificate FILE");
  bool json = ctx->output == AER_OUTPUT_JSON;
  json_t *list = json ? json_array() : NULL;
  int rc = 0;
  for (int i = optind; i < argc; i++) {
    pki_cert_info info;
    au_error err = {0};
    if (pki_cert_info_load(argv[i], &info, &err) < 0) {
      rc = fail("%s", err.msg);
      continue;
    }
    char before[32], after[32];
    format_time(info.not_before, before, sizeof(before));
    format_time(info.not_after, after, sizeof(after));
    if (json)
      json_array_append_new(list, info_json(argv[i], &info, before, after));
    else
      info_print(argv[i], &info, before, after);
    pki_cert_info_clear(&info);
  }
  if (json) {
    /* One file: the object itself, as a script would expect. */
    if (argc - optind == 1 && json_array_size(list) == 1) {
      json_t *one = json_incref(json_array_get(list, 0));
      json_decref(list);
      list = one;
    }
    print_json(list);
  }
  return rc;
}

/* --- dispatch --- */

static const char pki_usage[] =
    "usage: aer pki COMMAND [options]   (COMMAND --help for more)\n"
    "\n"
    "  init             create a CA, a server and client certificates\n"
    "  client NAME      issue a client certificate (spiffe://TD/user/NAME)\n"
    "  server           (re)issue this host's server certificate\n"
    "  instance NAME    issue a spawned instance's certificate\n"
    "  show FILE...     print a certificate\n";

static int dispatch_issue(aer_ctx *ctx, const char *sub, int argc, char **argv) {
  if (strcmp(sub, "client") == 0) return pki_issue_cmd(ctx, PKI_KIND_CLIENT, argc, argv);
  if (strcmp(sub, "server") == 0) return pki_issue_cmd(ctx, PKI_KIND_SERVER, argc, argv);
  return pki_issue_cmd(ctx, PKI_KIND_INSTANCE, argc, argv);
}

int cmd_pki(aer_ctx *ctx, int argc, char **argv) {
  if (argc < 2) {
    fputs(pki_usage, stderr);
    return 1;
  }
  const char *sub = argv[1];
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
    fputs(pki_usage, stdout);
    return 0;
  }
  /* The subcommand's own argv: argv[0] is its name. optind 0 makes glibc's
   * getopt start over after main's parsing. */
  argc--, argv++;
  optind = 0;
  if (strcmp(sub, "init") == 0) return pki_init_cmd(ctx, argc, argv);
  if (strcmp(sub, "show") == 0) return pki_show_cmd(ctx, argc, argv);
  if (strcmp(sub, "client") == 0 || strcmp(sub, "server") == 0 || strcmp(sub, "instance") == 0)
    return dispatch_issue(ctx, sub, argc, argv);
  fputs(pki_usage, stderr);
  return fail("unknown command %s", sub);
}
