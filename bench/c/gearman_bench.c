/* The C ceiling for `python -m bench --peers`: a libgearman worker that echoes its
 * workload, and a client that measures W1 (N jobs in flight) and W2 (N sequential jobs).
 *   gearman_bench worker PORT FUNCTION
 *   gearman_bench w1 PORT FUNCTION N      -> prints jobs/s
 *   gearman_bench w2 PORT FUNCTION N      -> prints p50_ms p99_ms
 * Built by the bench with: cc -O2 gearman_bench.c -lgearman */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void *echo(gearman_job_st *job, void *context, size_t *size, gearman_return_t *ret) {
  (void)context;
  size_t n = gearman_job_workload_size(job);
  char *out = malloc(n ? n : 1);
  memcpy(out, gearman_job_workload(job), n);
  *size = n;
  *ret = GEARMAN_SUCCESS;
  return out;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s worker|w1|w2 PORT FUNCTION [N]\n", argv[0]);
    return 2;
  }
  in_port_t port = (in_port_t)atoi(argv[2]);
  const char *function = argv[3];
  if (strcmp(argv[1], "worker") == 0) {
    gearman_worker_st *worker = gearman_worker_create(NULL);
    gearman_worker_add_server(worker, "127.0.0.1", port);
    gearman_worker_add_function(worker, function, 0, echo, NULL);
    for (;;) {
      if (gearman_worker_work(worker) != GEARMAN_SUCCESS) {
        fprintf(stderr, "worker: %s\n", gearman_worker_error(worker));
        return 1;
      }
    }
  }
  int count = argc > 4 ? atoi(argv[4]) : 1000;
  gearman_client_st *client = gearman_client_create(NULL);
  gearman_client_add_server(client, "127.0.0.1", port);
  gearman_return_t ret;
  if (strcmp(argv[1], "w1") == 0) {
    double started = now();
    for (int i = 0; i < count; i++) {
      char data[32];
      int n = snprintf(data, sizeof data, "job-%d", i);
      gearman_client_add_task(client, NULL, NULL, function, NULL, data, (size_t)n, &ret);
      if (ret != GEARMAN_SUCCESS) { fprintf(stderr, "add_task: %s\n", gearman_client_error(client)); return 1; }
    }
    if (gearman_client_run_tasks(client) != GEARMAN_SUCCESS) {
      fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
      return 1;
    }
    printf("%.1f\n", count / (now() - started));
    return 0;
  }
  double *samples = malloc(sizeof(double) * (size_t)count);
  for (int i = 0; i < count; i++) {
    size_t size;
    double started = now();
    void *result = gearman_client_do(client, function, NULL, "x", 1, &size, &ret);
    samples[i] = (now() - started) * 1000.0;
    if (ret != GEARMAN_SUCCESS) { fprintf(stderr, "do: %s\n", gearman_client_error(client)); return 1; }
    free(result);
  }
  qsort(samples, (size_t)count, sizeof(double), cmp);
  printf("%.3f %.3f\n", samples[count / 2], samples[(int)(count * 0.99)]);
  return 0;
}
