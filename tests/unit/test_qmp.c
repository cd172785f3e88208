/* QMP message handling: the line parser, command formatting, and the
 * client's greeting/negotiation/command/event flow against a scripted peer
 * on a socketpair. Also the console ring buffer the VM's serial output
 * goes to. The real QEMU is exercised by tests/integration/test_vms.py. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vm/console.h"
#include "vm/qmp.h"

static void test_parser_split_and_classify(void **state) {
  (void)state;
  qmp_parser p;
  qmp_parser_init(&p);
  au_error err = {0};
  qmp_msg m;
  const char *greeting =
      "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, "
      "\"capabilities\": [\"oob\"]}}\r\n";
  /* Fed in pieces: nothing comes out before the newline. */
  assert_int_equal(qmp_parser_feed(&p, greeting, 10, &err), 0);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 0);
  assert_int_equal(qmp_parser_feed(&p, greeting + 10, strlen(greeting) - 10, &err), 0);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1);
  assert_int_equal(m.type, QMP_MSG_GREETING);
  qmp_msg_clear(&m);

  const char *more =
      "{\"return\": {}, \"id\": 7}\r\n"
      "\r\n"
      "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", "
      "\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"
      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been "
      "found\"}, \"id\": 8}\r\n"
      "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n";
  assert_int_equal(qmp_parser_feed(&p, more, strlen(more), &err), 0);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1);
  assert_int_equal(m.type, QMP_MSG_RETURN);
  assert_int_equal(m.id, 7);
  qmp_msg_clear(&m);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1); /* blank line skipped */
  assert_int_equal(m.type, QMP_MSG_EVENT);
  assert_string_equal(m.event, "SHUTDOWN");
  assert_string_equal(json_string_value(json_object_get(m.data, "reason")), "guest-shutdown");
  assert_true(json_is_true(json_object_get(m.data, "guest")));
  qmp_msg_clear(&m);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1);
  assert_int_equal(m.type, QMP_MSG_ERROR);
  assert_int_equal(m.id, 8);
  assert_string_equal(m.error_class, "CommandNotFound");
  assert_non_null(strstr(m.error_desc, "nope"));
  qmp_msg_clear(&m);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1);
  assert_int_equal(m.type, QMP_MSG_RETURN);
  assert_int_equal(m.id, -1);
  assert_string_equal(json_string_value(json_object_get(m.data, "status")), "running");
  qmp_msg_clear(&m);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 0);
  qmp_parser_clear(&p);
}

static void test_parser_rejects_garbage(void **state) {
  (void)state;
  qmp_parser p;
  qmp_parser_init(&p);
  au_error err = {0};
  qmp_msg m;
  const char *lines = "not json\n[1,2]\n{\"what\": 1}\n{\"a\":1,\"a\":2}\n{\"return\": 5}\n";
  assert_int_equal(qmp_parser_feed(&p, lines, strlen(lines), &err), 0);
  assert_int_equal(qmp_parser_next(&p, &m, &err), -EBADMSG);
  assert_int_equal(qmp_parser_next(&p, &m, &err), -EBADMSG);
  assert_int_equal(qmp_parser_next(&p, &m, &err), -EBADMSG);
  assert_non_null(strstr(err.msg, "unknown"));
  assert_int_equal(qmp_parser_next(&p, &m, &err), -EBADMSG); /* duplicate key */
  /* The stream goes on after bad lines. */
  assert_int_equal(qmp_parser_next(&p, &m, &err), 1);
  assert_int_equal(json_integer_value(m.data), 5);
  qmp_msg_clear(&m);

  /* An endless line is refused rather than buffered without bound. */
  char *big = malloc(QMP_LINE_MAX + 2);
  memset(big, 'x', QMP_LINE_MAX + 1);
  assert_int_equal(qmp_parser_feed(&p, big, QMP_LINE_MAX + 1, &err), -E2BIG);
  free(big);
  assert_int_equal(qmp_parser_next(&p, &m, &err), 0);
  qmp_parser_clear(&p);
}

static void test_format_command(void **state) {
  (void)state;
  char *s = qmp_format_command("quit", NULL, 3);
  assert_string_equal(s, "{\"execute\":\"quit\",\"id\":3}\n");
  free(s);
  json_t *args = json_pack("{s:s}", "device", "net0");
  s = qmp_format_command("device_del", args, 4);
  assert_string_equal(
      s, "{\"execute\":\"device_del\",\"arguments\":{\"device\":\"net0\"},\"id\":4}\n");
  free(s);
  json_decref(args);
}

/* A scripted QMP peer: greeting, then answers each command by id; sends
 * an event before answering "system_powerdown". */
static void *fake_qemu(void *arg) {
  int fd = *(int *)arg;
  FILE *f = fdopen(fd, "r+");
  fputs("{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n", f);
  fflush(f);
  char line[4096];
  while (fgets(line, sizeof(line), f)) {
    json_t *cmd = json_loads(line, 0, NULL);
    const char *name = json_string_value(json_object_get(cmd, "execute"));
    json_int_t id = json_integer_value(json_object_get(cmd, "id"));
    if (strcmp(name, "qmp_capabilities") == 0) {
      fprintf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
    } else if (strcmp(name, "query-status") == 0) {
      fprintf(f, "{\"return\": {\"status\": \"running\"}, \"id\": %lld}\r\n", (long long)id);
    } else if (strcmp(name, "system_powerdown") == 0) {
      fputs("{\"event\": \"POWERDOWN\", \"timestamp\": {}}\r\n", f);
      fprintf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
    } else if (strcmp(name, "quit") == 0) {
      fprintf(f, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
      fputs("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": "
            "\"host-qmp-quit\"}}\r\n",
            f);
      fflush(f);
      json_decref(cmd);
      break;
    } else {
      fprintf(
          f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no %s\"}, \"id\": %lld}\r\n",
          name, (long long)id);
    }
    fflush(f);
    json_decref(cmd);
  }
  fclose(f);
  return NULL;
}

typedef struct seen {
  char events[8][32];
  int n_events;
  int n_returns;
} seen;

static void on_msg(const qmp_msg *m, void *ud) {
  seen *s = ud;
  if (m->type == QMP_MSG_EVENT && s->n_events < 8) {
    snprintf(s->events[s->n_events], 32, "%s", m->event);
    if (strcmp(m->event, "SHUTDOWN") == 0)
      assert_string_equal(json_string_value(json_object_get(m->data, "reason")), "host-qmp-quit");
    s->n_events++;
  }
  if (m->type == QMP_MSG_RETURN) s->n_returns++;
}

static void test_client_session(void **state) {
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  pthread_t t;
  pthread_create(&t, NULL, fake_qemu, &sv[1]);
  qmp_client *c = NULL;
  au_error err = {0};
  assert_int_equal(qmp_client_open(sv[0], 2000, &c, &err), 0);

  json_t *ret = NULL;
  assert_int_equal(qmp_client_execute(c, "query-status", NULL, &ret, 2000, &err), 0);
  assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
  json_decref(ret);

  assert_int_equal(qmp_client_execute(c, "nope", NULL, NULL, 2000, &err), -EREMOTEIO);
  assert_non_null(strstr(err.msg, "CommandNotFound"));

  /* The event that came before the answer is kept for the reader. */
  assert_int_equal(qmp_client_execute(c, "system_powerdown", NULL, NULL, 2000, &err), 0);
  seen s = {0};
  assert_int_equal(qmp_client_send(c, "quit", NULL, &err), 0);
  int r = 0;
  for (int i = 0; i < 200 && r == 0; i++) {
    r = qmp_client_read(c, on_msg, &s, &err);
    if (r == 0) usleep(5000);
  }
  assert_int_equal(r, -EPIPE); /* the peer closed after quit */
  assert_int_equal(s.n_events, 2);
  assert_string_equal(s.events[0], "POWERDOWN");
  assert_string_equal(s.events[1], "SHUTDOWN");
  assert_int_equal(s.n_returns, 1);
  qmp_client_free(c);
  pthread_join(t, NULL);
}

static void *silent_peer(void *arg) {
  int fd = *(int *)arg;
  char buf[64];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
  close(fd);
  return NULL;
}

static void test_client_timeout_and_bad_greeting(void **state) {
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  qmp_client *c = NULL;
  au_error err = {0};
  /* No greeting within the deadline. */
  assert_int_equal(qmp_client_open(sv[0], 100, &c, &err), -ETIMEDOUT);
  close(sv[1]);

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const char *wrong = "{\"return\": {}}\n";
  assert_int_equal(write(sv[1], wrong, strlen(wrong)), (ssize_t)strlen(wrong));
  pthread_t t;
  pthread_create(&t, NULL, silent_peer, &sv[1]);
  assert_int_equal(qmp_client_open(sv[0], 1000, &c, &err), -EPROTO);
  pthread_join(t, NULL);

  /* A peer that closes at once. */
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  close(sv[1]);
  assert_int_equal(qmp_client_open(sv[0], 1000, &c, &err), -EPIPE);
}

static void test_console_ring(void **state) {
  (void)state;
  vm_console *c = vm_console_new(4096);
  uint64_t cur = 0, dropped;
  bool eof;
  char buf[8192];
  assert_int_equal(vm_console_read(c, &cur, buf, sizeof(buf), &dropped, 0, &eof), 0);
  assert_false(eof);
  vm_console_write(c, "hello ", 6);
  vm_console_write(c, "world", 5);
  assert_int_equal(vm_console_read(c, &cur, buf, 4, &dropped, 0, &eof), 4);
  assert_memory_equal(buf, "hell", 4);
  assert_int_equal(vm_console_read(c, &cur, buf, sizeof(buf), &dropped, 0, &eof), 7);
  assert_memory_equal(buf, "o world", 7);
  assert_int_equal(dropped, 0);

  /* Overflow: 5000 more bytes in a 4096-byte ring; a reader at 0 misses
   * the oldest and is told how many. */
  char big[5000];
  for (int i = 0; i < 5000; i++)
    big[i] = (char)('a' + i % 26);
  vm_console_write(c, big, sizeof(big));
  uint64_t cur0 = 0;
  size_t n = vm_console_read(c, &cur0, buf, sizeof(buf), &dropped, 0, &eof);
  assert_int_equal(n, 4096);
  assert_int_equal(dropped, 11 + 5000 - 4096);
  assert_memory_equal(buf, big + 5000 - 4096, 4096);
  assert_int_equal(vm_console_start(c), 5011 - 4096);
  assert_int_equal(vm_console_end(c), 5011);

  /* One write larger than the ring keeps its newest bytes. */
  char huge[10000];
  memset(huge, 'z', sizeof(huge));
  huge[9999] = '!';
  vm_console_write(c, huge, sizeof(huge));
  n = vm_console_read(c, &cur0, buf, sizeof(buf), &dropped, 0, &eof);
  assert_int_equal(n, 4096);
  assert_int_equal(buf[4095], '!');

  /* Follow: a timed wait with nothing new times out without EOF; after
   * close the reader gets EOF. */
  n = vm_console_read(c, &cur0, buf, sizeof(buf), &dropped, 50, &eof);
  assert_int_equal(n, 0);
  assert_false(eof);
  vm_console_close(c);
  n = vm_console_read(c, &cur0, buf, sizeof(buf), &dropped, -1, &eof);
  assert_int_equal(n, 0);
  assert_true(eof);
  vm_console_free(c);
}

typedef struct follow_arg {
  vm_console *c;
  char got[64];
  size_t len;
} follow_arg;

static void *follower(void *arg) {
  follow_arg *a = arg;
  uint64_t cur = 0, dropped;
  bool eof = false;
  while (!eof) {
    size_t n = vm_console_read(a->c, &cur, a->got + a->len, sizeof(a->got) - a->len - 1, &dropped,
                               -1, &eof);
    a->len += n;
  }
  return NULL;
}

static void test_console_follow(void **state) {
  (void)state;
  follow_arg a = {.c = vm_console_new(4096)};
  pthread_t t;
  pthread_create(&t, NULL, follower, &a);
  usleep(20000);
  vm_console_write(a.c, "boot ", 5);
  usleep(20000);
  vm_console_write(a.c, "MARKER\n", 7);
  vm_console_close(a.c);
  pthread_join(t, NULL);
  a.got[a.len] = '\0';
  assert_string_equal(a.got, "boot MARKER\n");
  vm_console_free(a.c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parser_split_and_classify),
      cmocka_unit_test(test_parser_rejects_garbage),
      cmocka_unit_test(test_format_command),
      cmocka_unit_test(test_client_session),
      cmocka_unit_test(test_client_timeout_and_bad_greeting),
      cmocka_unit_test(test_console_ring),
      cmocka_unit_test(test_console_follow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
