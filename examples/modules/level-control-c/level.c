/*
 * level-control: closes a loop through a Modbus adapter, as an edged module in
 * C (clang --target=wasm32-wasi, wasi-libc, reactor model).
 *
 * Input: tank levels on sensors/{tank}/level, as the adapter of the tank
 * makes them (an adapter named "tank1" with no device_id stores its readings
 * as device "tank1"):
 *   {"device_id":"tank1","metric":"level","value":83.5,"timestamp":...}
 * Output: when the level rises above HIGH the drain valve opens, when it
 * falls below LOW it closes (the band in between keeps the valve as it is,
 * so a level that hovers does not make it chatter):
 *   devices/{tank}/valve/set   {"value":true}
 * The adapter answers on devices/{tank}/valve/set/result; a failed write
 * forgets the commanded state, so the next reading commands it again.
 * The commanded state per tank lives in kv and survives restarts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("edge"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("publish") int edge_publish(const char *topic, int topic_len, const char *payload, int payload_len);
IMPORT("kv_get") int edge_kv_get(const char *key, int key_len, char *out, int out_cap);
IMPORT("kv_set") int edge_kv_set(const char *key, int key_len, const char *val, int val_len);

#define HIGH 80.0
#define LOW 20.0

static char *inbox;
static int inbox_cap;

EXPORT("edge_alloc") char *edge_alloc(int size) {
  if (size > inbox_cap) {
    char *next = realloc(inbox, (size_t)size + 1);
    if (!next) return 0;
    inbox = next;
    inbox_cap = size;
  }
  return inbox;
}

EXPORT("edge_init") int edge_init(void) {
  printf("level-control ready: open above %.1f, close below %.1f\n", HIGH, LOW);
  return 0;
}

/* Finds "key": in a flat JSON object; points at what follows the colon. */
static const char *json_field(const char *json, const char *key) {
  char pattern[40];
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  const char *at = strstr(json, pattern);
  if (!at) return 0;
  at += strlen(pattern);
  while (*at == ' ' || *at == ':') at++;
  return at;
}

static void remember(const char *tank, const char *state) {
  char key[160];
  int n = snprintf(key, sizeof key, "valve/%s", tank);
  edge_kv_set(key, n, state, (int)strlen(state));
}

static int recall(const char *tank, char *out, int cap) {
  char key[160];
  int n = snprintf(key, sizeof key, "valve/%s", tank);
  int got = edge_kv_get(key, n, out, cap - 1);
  out[got > 0 ? got : 0] = 0;
  return got;
}

EXPORT("edge_on_message")
int edge_on_message(const char *topic, int topic_len, const char *payload, int payload_len) {
  char t[256], body[512];
  if (topic_len >= (int)sizeof t || payload_len >= (int)sizeof body) return 1;
  memcpy(t, topic, (size_t)topic_len);
  t[topic_len] = 0;
  memcpy(body, payload, (size_t)payload_len);
  body[payload_len] = 0;

  /* sensors/{tank}/level  or  devices/{tank}/valve/set/result */
  char *tank = strchr(t, '/');
  if (!tank) return 1;
  tank++;
  char *rest = strchr(tank, '/');
  if (!rest) return 1;
  *rest++ = 0;

  if (strncmp(t, "devices", 7) == 0) {
    const char *ok = json_field(body, "ok");
    if (ok && strncmp(ok, "true", 4) == 0) {
      printf("%s: valve write confirmed\n", tank);
    } else {
      fprintf(stderr, "%s: valve write failed: %s\n", tank, body);
      remember(tank, "unknown");
    }
    return 0;
  }

  const char *v = json_field(body, "value");
  if (!v) return 2;
  char *end;
  double level = strtod(v, &end);
  if (end == v) return 2;

  char state[16];
  recall(tank, state, sizeof state);
  const char *want = level > HIGH ? "open" : level < LOW ? "closed" : 0;
  if (!want || strcmp(want, state) == 0) return 0;

  char out_topic[200];
  int tl = snprintf(out_topic, sizeof out_topic, "devices/%s/valve/set", tank);
  const char *cmd = strcmp(want, "open") == 0 ? "{\"value\":true}" : "{\"value\":false}";
  if (edge_publish(out_topic, tl, cmd, (int)strlen(cmd)) != 0) return 3;
  remember(tank, want);
  printf("%s: level %.1f, valve %s\n", tank, level, want);
  return 0;
}
