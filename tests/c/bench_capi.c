/*
 * bench_capi.c - timing loops for benchmarks/test_bench_capi.py.
 *
 *   bench_capi N_LARGE CALLS
 *
 * Prints "BENCH <name> <best seconds per call> <checksum>" lines: per-call cost of the
 * cffi path (fastgex_gamma, n=1; fastgex_gex_batch on an 8-row chain), of the compiled
 * function pointer, and one fastgex_contract_gex over N_LARGE contracts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "arrow_chain.h"
#include "fastgex.h"

static double now(void) {
  struct timespec spec;
  clock_gettime(CLOCK_MONOTONIC, &spec);
  return (double)spec.tv_sec + 1e-9 * (double)spec.tv_nsec;
}

static int check(int status, const char* what) {
  if (status != FASTGEX_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, fastgex_status_name(status), fastgex_last_error());
    exit(1);
  }
  return status;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: bench_capi N_LARGE CALLS\n");
    return 2;
  }
  long n_large = atol(argv[1]);
  long calls = atol(argv[2]);
  check(fastgex_init(), "fastgex_init");

  /* 1. cffi path, one contract per call */
  double strike = 95.0, vol = 0.2, time_to_expiry = 0.25, gamma = 0.0, checksum = 0.0;
  double best = INFINITY;
  for (int repeat = 0; repeat < 5; repeat++) {
    double started = now();
    for (long call = 0; call < calls; call++) {
      check(fastgex_gamma(1, 100.0, &strike, &vol, &time_to_expiry, 0.0, 0.0, &gamma, NULL),
            "fastgex_gamma");
      checksum += gamma;
    }
    double elapsed = (now() - started) / (double)calls;
    if (elapsed < best) best = elapsed;
  }
  printf("BENCH cffi_gamma_call %.6e %.17g\n", best, gamma);

  /* 2. the compiled function pointer */
  fastgex_gamma_fn gamma_fn;
  check(fastgex_gamma_function(&gamma_fn), "fastgex_gamma_function");
  long pointer_calls = calls * 1000;
  best = INFINITY;
  for (int repeat = 0; repeat < 5; repeat++) {
    double sum = 0.0;
    double started = now();
    for (long call = 0; call < pointer_calls; call++) {
      /* vary the strike so the call cannot be hoisted out of the loop */
      sum += gamma_fn(100.0, strike + (double)(call & 7), vol, time_to_expiry, 0.0, 0.0);
    }
    double elapsed = (now() - started) / (double)pointer_calls;
    if (elapsed < best) best = elapsed;
    checksum += sum;
  }
  printf("BENCH cfunc_gamma_call %.6e %.17g\n", best,
         gamma_fn(100.0, strike, vol, time_to_expiry, 0.0, 0.0));

  /* 3. a small chain through the Arrow C data interface, per call */
  const char* const names[8] = {"AAA", "AAA", "AAA", "AAA", "AAA", "AAA", "AAA", "AAA"};
  const double strikes[8] = {90, 95, 100, 105, 90, 95, 100, 105};
  const char types[8] = {'C', 'C', 'C', 'C', 'P', 'P', 'P', 'P'};
  const double vols[8] = {0.3, 0.25, 0.2, 0.22, 0.35, 0.3, 0.24, 0.2};
  const double times[8] = {0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5};
  const double oi[8] = {100, 200, 300, 400, 500, 600, 700, 800};
  fastgex_options options;
  fastgex_options_init(&options);
  options.spot = 100.0;
  long chain_calls = calls / 20 > 10 ? calls / 20 : 10;
  best = INFINITY;
  for (int repeat = 0; repeat < 3; repeat++) {
    double started = now();
    for (long call = 0; call < chain_calls; call++) {
      ArrowChain chain;
      arrow_chain_make(&chain, 8, names, strikes, types, vols, times, oi);
      struct ArrowArrayStream totals;
      check(fastgex_gex_batch(&chain.array, &chain.schema, &options, &totals, NULL, NULL),
            "fastgex_gex_batch");
      totals.release(&totals);
    }
    double elapsed = (now() - started) / (double)chain_calls;
    if (elapsed < best) best = elapsed;
  }
  printf("BENCH cffi_gex_batch_call %.6e 0\n", best);

  /* 4. one call over n_large contracts */
  double* large_strike = malloc(sizeof(double) * n_large);
  double* large_vol = malloc(sizeof(double) * n_large);
  double* large_time = malloc(sizeof(double) * n_large);
  double* large_oi = malloc(sizeof(double) * n_large);
  int8_t* large_call = malloc((size_t)n_large);
  if (!large_strike || !large_vol || !large_time || !large_oi || !large_call) return 1;
  for (long row = 0; row < n_large; row++) {
    large_strike[row] = 60.0 + 80.0 * (double)(row % 997) / 997.0;
    large_vol[row] = 0.1 + 0.5 * (double)(row % 89) / 89.0;
    large_time[row] = 0.01 + 1.5 * (double)(row % 53) / 53.0;
    large_oi[row] = (double)(row % 5000);
    large_call[row] = (int8_t)(row & 1);
  }
  double total = 0.0;
  best = INFINITY;
  for (int repeat = 0; repeat < 5; repeat++) {
    double started = now();
    check(fastgex_contract_gex(n_large, 100.0, large_strike, large_vol, large_time, large_oi,
                               large_call, 100.0, 0.0, 0.0, FASTGEX_SHORT_CALLS_LONG_PUTS,
                               FASTGEX_DOLLARS_PER_1PCT, NULL, &total, NULL),
          "fastgex_contract_gex");
    double elapsed = now() - started;
    if (elapsed < best) best = elapsed;
  }
  printf("BENCH cffi_contract_gex_large %.6e %.17g\n", best, total);
  printf("CHECKSUM %.17g\n", checksum);
  free(large_strike);
  free(large_vol);
  free(large_time);
  free(large_oi);
  free(large_call);
  return 0;
}
