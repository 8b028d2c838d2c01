/*
 * anomaly-score: scores a sliding window of readings with an operator-installed
 * ONNX model through WASI-NN and publishes an alert when the score is high.
 *
 * Input: readings on sensors/{device_id}/vibration, JSON such as
 *   {"device_id":"pump-7","metric":"vibration","value":0.42,"timestamp":...}
 * For each device it keeps the last 16 values; once it has 16, every reading
 * runs the model "window-scorer" (input [1,16] float32, output [1,1] float32)
 * on the window, oldest first. A score above the threshold (default 5.0;
 * a message on config/anomaly-score whose payload is a number changes it)
 * publishes, on alerts/{device_id}/{metric}/anomaly:
 *   {"device_id":"pump-7","metric":"vibration","score":15.49,"threshold":5,"window":16}
 * The example model (examples/modules/anomaly-score-c/window-scorer.onnx) is
 * the root mean square of consecutive differences: steady signals score low,
 * jumps and spikes high. Any model with the same input and output works.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wasi_nn.h"

#define IMPORT(name) __attribute__((import_module("edge"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("publish") int edge_publish(const char *topic, int topic_len, const char *payload, int payload_len);

#define WINDOW 16
#define DEVICES 32
#define MODEL "window-scorer"

struct series {
  char key[96]; /* device/metric */
  float values[WINDOW];
  int count; /* values seen, up to WINDOW */
  int next;  /* ring position of the next value */
};

static struct series series[DEVICES];
static double threshold = 5.0;
static char *inbox;
static int inbox_cap;
static int loaded; /* graph and context are ready */
static nn_graph graph;
static nn_context ctx;

EXPORT("edge_alloc") char *edge_alloc(int size) {
  if (size > inbox_cap) {
    char *next = realloc(inbox, (size_t)size + 1);
    if (!next) return 0;
    inbox = next;
    inbox_cap = size;
  }
  return inbox;
}

/* Loads the model once; again after a failure (it may be installed later). */
static int ensure_model(void) {
  if (loaded) return 0;
  int err = nn_load_by_name(MODEL, sizeof MODEL - 1, &graph);
  if (err == 0) err = nn_init_execution_context(graph, &ctx);
  if (err != 0) {
    fprintf(stderr, "model %s is not available (wasi-nn error %d)\n", MODEL, err);
    return err;
  }
  loaded = 1;
  return 0;
}

static struct series *find(const char *key) {
  struct series *free_slot = 0;
  for (int i = 0; i < DEVICES; i++) {
    if (strcmp(series[i].key, key) == 0) return &series[i];
    if (!free_slot && series[i].key[0] == 0) free_slot = &series[i];
  }
  if (!free_slot) return 0;
  snprintf(free_slot->key, sizeof free_slot->key, "%s", key);
  return free_slot;
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

/* Runs the model on the window, oldest value first. */
static int score(const struct series *s, float *out) {
  float window[WINDOW];
  for (int i = 0; i < WINDOW; i++) window[i] = s->values[(s->next + i) % WINDOW];
  static const uint32_t dims[2] = {1, WINDOW};
  nn_tensor input = {dims, 2, NN_F32, (const uint8_t *)window, sizeof window};
  int err = nn_set_input(ctx, 0, &input);
  if (err == 0) err = nn_compute(ctx);
  uint32_t written = 0;
  if (err == 0) err = nn_get_output(ctx, 0, (uint8_t *)out, sizeof *out, &written);
  if (err == 0 && written != sizeof *out) err = NN_INVALID_ARGUMENT;
  return err;
}

EXPORT("edge_on_message")
int edge_on_message(const char *topic, int topic_len, const char *payload, int payload_len) {
  char t[256];
  if (topic_len >= (int)sizeof t) return 1;
  memcpy(t, topic, (size_t)topic_len);
  t[topic_len] = 0;

  if (strcmp(t, "config/anomaly-score") == 0) {
    char *copy = strndup(payload, (size_t)payload_len);
    threshold = strtod(copy, 0);
    free(copy);
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
  char key[96];
  snprintf(key, sizeof key, "%s/%s", device, metric);
  struct series *s = find(key);
  if (!s) {
    fprintf(stderr, "more than %d series: %s ignored\n", DEVICES, key);
    return 3;
  }
  s->values[s->next] = (float)value;
  s->next = (s->next + 1) % WINDOW;
  if (s->count < WINDOW) s->count++;
  if (s->count < WINDOW) return 0;

  if (ensure_model() != 0) return 4;
  float sc;
  int err = score(s, &sc);
  if (err != 0) {
    fprintf(stderr, "scoring %s failed (wasi-nn error %d)\n", key, err);
    loaded = 0; /* the model may have been replaced or removed: load it again next time */
    return 5;
  }
  if (sc <= threshold) return 0;

  char out_topic[300], out[300];
  int tl = snprintf(out_topic, sizeof out_topic, "alerts/%s/%s/anomaly", device, metric);
  int pl = snprintf(out, sizeof out,
                    "{\"device_id\":\"%s\",\"metric\":\"%s\",\"score\":%.4g,\"threshold\":%g,\"window\":%d}",
                    device, metric, sc, threshold, WINDOW);
  printf("%s anomaly score %.3f (threshold %g)\n", key, sc, threshold);
  return edge_publish(out_topic, tl, out, pl) == 0 ? 0 : 6;
}
