/*
 * threshold-alert: the local decision engine of the seeds, as an edged module
 * in C (clang --target=wasm32-wasi, wasi-libc, reactor model).
 *
 * Input: readings on sensors/{device_id}/temperature, JSON such as
 *   {"device_id":"pump-7","metric":"temperature","value":81.5,"timestamp":...}
 * Output: on every crossing of the threshold (with hysteresis, so a noisy
 * reading does not flap) one message on alerts/{device_id}/temperature:
 *   {"device_id":"pump-7","value":81.5,"threshold":75.0,"state":"high"}
 * The per-device state lives in kv, so it survives restarts and new versions.
 * The threshold can be changed at run time with a message on
 * config/threshold-alert whose payload is a number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("edge"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("publish") int edge_publish(const char *topic, int topic_len, const char *payload, int payload_len);
IMPORT("kv_get") int edge_kv_get(const char *key, int key_len, char *out, int out_cap);
IMPORT("kv_set") int edge_kv_set(const char *key, int key_len, const char *val, int val_len);

#define HYSTERESIS 2.0

static char *inbox;
static int inbox_cap;
static double threshold = 75.0;

EXPORT("edge_alloc") char *edge_alloc(int size) {
  if (size > inbox_cap) {
    char *next = realloc(inbox, (size_t)size + 1);
    if (!next) return 0;
    inbox = next;
    inbox_cap = size;
  }
  return inbox;
}

static int kv_get_str(const char *key, char *out, int cap) {
  int n = edge_kv_get(key, (int)strlen(key), out, cap - 1);
  if (n < 0) return n;
  out[n] = 0;
  return n;
}

EXPORT("edge_init") int edge_init(void) {
  char buf[32];
  if (kv_get_str("threshold", buf, sizeof buf) > 0) threshold = strtod(buf, 0);
  printf("threshold-alert ready, threshold %.2f\n", threshold);
  return 0;
}

/* Finds "key": in a flat JSON object and parses the number after it. */
static int json_number(const char *json, int len, const char *key, double *out) {
  char pattern[40];
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  char *copy = strndup(json, (size_t)len);
  if (!copy) return 0;
  char *at = strstr(copy, pattern);
  int ok = 0;
  if (at) {
    at += strlen(pattern);
    while (*at == ' ' || *at == ':') at++;
    char *end;
    *out = strtod(at, &end);
    ok = end != at;
  }
  free(copy);
  return ok;
}

EXPORT("edge_on_message")
int edge_on_message(const char *topic, int topic_len, const char *payload, int payload_len) {
  char t[256];
  if (topic_len >= (int)sizeof t) return 1;
  memcpy(t, topic, (size_t)topic_len);
  t[topic_len] = 0;

  if (strcmp(t, "config/threshold-alert") == 0) {
    char *copy = strndup(payload, (size_t)payload_len);
    threshold = strtod(copy, 0);
    free(copy);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%.3f", threshold);
    edge_kv_set("threshold", 9, buf, n);
    printf("threshold set to %.2f\n", threshold);
    return 0;
  }

  /* sensors/{device_id}/{metric} */
  char *device = strchr(t, '/');
  if (!device) return 1;
  device++;
  char *metric = strchr(device, '/');
  if (!metric) return 1;
  *metric++ = 0;

  double value;
  if (!json_number(payload, payload_len, "value", &value)) {
    fprintf(stderr, "no numeric value in reading from %s\n", device);
    return 2;
  }

  char key[300], state[8] = "normal";
  snprintf(key, sizeof key, "state/%s/%s", device, metric);
  kv_get_str(key, state, sizeof state);
  int high = strcmp(state, "high") == 0;
  int next = high ? value > threshold - HYSTERESIS : value > threshold;
  if (next == high) return 0;

  const char *s = next ? "high" : "normal";
  edge_kv_set(key, (int)strlen(key), s, (int)strlen(s));
  char out_topic[300], out[256];
  int tl = snprintf(out_topic, sizeof out_topic, "alerts/%s/%s", device, metric);
  int pl = snprintf(out, sizeof out,
                    "{\"device_id\":\"%s\",\"metric\":\"%s\",\"value\":%g,\"threshold\":%g,\"state\":\"%s\"}",
                    device, metric, value, threshold, s);
  printf("%s %s: %g (threshold %g)\n", device, s, value, threshold);
  return edge_publish(out_topic, tl, out, pl) == 0 ? 0 : 3;
}
