/*
 * capi_test.c - libfastgex under bad input and from several threads (driven by
 * tests/test_capi.py, which checks the printed lines).
 *
 *   capi_test errors    every bad-input case: "CASE <name> <status> <message>"
 *   capi_test threads   T threads x R rounds of every call, compared with one thread
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_chain.h"
#include "fastgex.h"

#define N_ROWS 8

static const char* const underlying[N_ROWS] = {"AAA", "AAA", "AAA", "AAA",
                                               "AAA", "AAA", "AAA", "AAA"};
static const double strike[N_ROWS] = {90, 95, 100, 105, 90, 95, 100, 105};
static const char option_type[N_ROWS] = {'C', 'C', 'C', 'C', 'P', 'P', 'P', 'P'};
static const double implied_vol[N_ROWS] = {0.3, 0.25, 0.2, 0.22, 0.35, 0.3, 0.24, 0.2};
static const double time_to_expiry[N_ROWS] = {0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5};
static const double open_interest[N_ROWS] = {100, 200, 300, 400, 500, 600, 700, 800};
static const int8_t is_call[N_ROWS] = {1, 1, 1, 1, 0, 0, 0, 0};

static void report(const char* name, int status) {
  const char* message = fastgex_last_error();
  char line[512];
  snprintf(line, sizeof line, "%s", message);
  for (char* cursor = line; *cursor; cursor++) {
    if (*cursor == '\n') *cursor = ' ';
  }
  printf("CASE %s %s %s\n", name, fastgex_status_name(status), line);
  fflush(stdout);
}

static void make_chain(ArrowChain* chain) {
  arrow_chain_make(chain, N_ROWS, underlying, strike, option_type, implied_vol,
                   time_to_expiry, open_interest);
}

/* Total GEX of the test chain through one record batch; NAN on failure. */
static double batch_total(const fastgex_options* options, int* status_out) {
  ArrowChain chain;
  make_chain(&chain);
  struct ArrowArrayStream totals;
  int status = fastgex_gex_batch(&chain.array, &chain.schema, options, &totals, NULL, NULL);
  *status_out = status;
  if (status != FASTGEX_OK) return NAN;
  struct ArrowSchema schema;
  struct ArrowArray batch;
  double total = NAN;
  if (totals.get_schema(&totals, &schema) == 0) {
    int column = arrow_column_index(&schema, "total_gex");
    if (totals.get_next(&totals, &batch) == 0 && batch.release != NULL) {
      if (column >= 0 && batch.length == 1) total = arrow_float64(batch.children[column], 0);
      batch.release(&batch);
    }
    schema.release(&schema);
  }
  totals.release(&totals);
  return total;
}

static int errors(void) {
  double out[N_ROWS], total = 0.0;
  int64_t invalid = -1;
  fastgex_gamma_fn gamma_fn = NULL;
  struct ArrowArrayStream stream, result;
  ArrowChain chain;
  fastgex_options options;
  int status;

  /* ---- before init: no interpreter is started, inputs are still released ---- */
  report("before_init_gamma", fastgex_gamma(N_ROWS, 100, strike, implied_vol, time_to_expiry,
                                            0, 0, out, &invalid));
  report("before_init_function", fastgex_gamma_function(&gamma_fn));
  make_chain(&chain);
  arrow_chain_stream(&chain, &stream);
  report("before_init_gex", fastgex_gex(&stream, NULL, &result, NULL, NULL));
  printf("CHECK before_init_stream_released %d\n", stream.release == NULL);
  printf("CHECK before_init_output_cleared %d\n", result.release == NULL);
  printf("CHECK version %s\n", fastgex_version());

  status = fastgex_init();
  report("init", status);
  if (status != FASTGEX_OK) return 1;
  report("init_again", fastgex_init());

  /* ---- raw arrays ---- */
  report("gamma_null_strike",
         fastgex_gamma(N_ROWS, 100, NULL, implied_vol, time_to_expiry, 0, 0, out, NULL));
  report("gamma_null_out",
         fastgex_gamma(N_ROWS, 100, strike, implied_vol, time_to_expiry, 0, 0, NULL, NULL));
  report("gamma_negative_n",
         fastgex_gamma(-1, 100, strike, implied_vol, time_to_expiry, 0, 0, out, NULL));
  report("gamma_zero_n_null", fastgex_gamma(0, 100, NULL, NULL, NULL, 0, 0, NULL, NULL));
  report("gamma_bad_spot",
         fastgex_gamma(N_ROWS, -5, strike, implied_vol, time_to_expiry, 0, 0, out, NULL));
  report("gamma_nan_rate",
         fastgex_gamma(N_ROWS, 100, strike, implied_vol, time_to_expiry, NAN, 0, out, NULL));
  double bad_vol[N_ROWS];
  memcpy(bad_vol, implied_vol, sizeof bad_vol);
  bad_vol[1] = NAN;
  bad_vol[2] = -0.2;
  bad_vol[3] = INFINITY;
  status = fastgex_gamma(N_ROWS, 100, strike, bad_vol, time_to_expiry, 0, 0, out, &invalid);
  report("gamma_invalid_rows", status);
  printf("CHECK gamma_invalid_count %lld nan %d %d %d finite %d\n", (long long)invalid,
         isnan(out[1]), isnan(out[2]), isnan(out[3]), isfinite(out[0]));
  report("contract_gex_null_total",
         fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, open_interest,
                              is_call, 100, 0, 0, 0, 0, out, NULL, NULL));
  report("contract_gex_null_flags",
         fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, open_interest,
                              NULL, 100, 0, 0, 0, 0, out, &total, NULL));
  report("contract_gex_bad_convention",
         fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, open_interest,
                              is_call, 100, 0, 0, 7, 0, out, &total, NULL));
  report("contract_gex_bad_unit",
         fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, open_interest,
                              is_call, 100, 0, 0, 0, -1, out, &total, NULL));
  report("contract_gex_bad_multiplier",
         fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, open_interest,
                              is_call, 0, 0, 0, 0, 0, out, &total, NULL));
  int8_t bad_flags[N_ROWS];
  memcpy(bad_flags, is_call, sizeof bad_flags);
  bad_flags[0] = 2;
  double bad_oi[N_ROWS];
  memcpy(bad_oi, open_interest, sizeof bad_oi);
  bad_oi[5] = -1;
  status = fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry, bad_oi,
                                bad_flags, 100, 0, 0, 0, 0, out, &total, &invalid);
  report("contract_gex_invalid_rows", status);
  printf("CHECK contract_gex_invalid_count %lld total_finite %d zero %d %d\n",
         (long long)invalid, isfinite(total), out[0] == 0.0, out[5] == 0.0);
  report("function_null_out", fastgex_gamma_function(NULL));
  report("black76_function_null_out", fastgex_black76_gamma_function(NULL));

  /* ---- Arrow input ---- */
  report("gex_null_chain", fastgex_gex(NULL, NULL, &result, NULL, NULL));
  make_chain(&chain);
  arrow_chain_stream(&chain, &stream);
  report("gex_null_output", fastgex_gex(&stream, NULL, NULL, NULL, NULL));
  printf("CHECK null_output_stream_released %d\n", stream.release == NULL);
  report("gex_released_stream", fastgex_gex(&stream, NULL, &result, NULL, NULL));
  make_chain(&chain);
  report("batch_null_schema", fastgex_gex_batch(&chain.array, NULL, NULL, &result, NULL, NULL));
  printf("CHECK null_schema_array_released %d\n", chain.array.release == NULL);
  report("levels_null_chain", fastgex_levels(NULL, NULL, &result, NULL, NULL));

  /* A chain without spot and no spot option. */
  batch_total(NULL, &status);
  report("gex_no_spot", status);

  fastgex_options_init(&options);
  options.spot = 100;

  make_chain(&chain);
  chain.column_schemas[1].format = "u"; /* strike as strings */
  chain.columns[1].n_buffers = 3;
  chain.column_buffers[1][1] = chain.type_offsets;
  chain.column_buffers[1][2] = chain.type_bytes;
  report("gex_strike_as_text",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));
  printf("CHECK wrong_type_inputs_released %d %d\n", chain.array.release == NULL,
         chain.schema.release == NULL);

  make_chain(&chain);
  chain.schema.n_children = 5; /* open_interest (the last column) missing */
  chain.array.n_children = 5;
  report("gex_missing_open_interest",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));

  make_chain(&chain);
  chain.columns[1].length = N_ROWS - 3; /* strike shorter than the batch */
  report("gex_short_column",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));

  make_chain(&chain);
  chain.column_schemas[3].format = "zz"; /* not an Arrow format */
  report("gex_bad_format",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));

  make_chain(&chain);
  chain.columns[1].n_buffers = 1; /* a float64 column needs 2 buffers */
  report("gex_bad_buffer_count",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));

  /* ---- options ---- */
  fastgex_options_init(&options);
  options.spot = 100;
  options.version = 99;
  batch_total(&options, &status);
  report("options_bad_version", status);

  fastgex_options_init(&options);
  options.spot = 100;
  options.convention = 5;
  batch_total(&options, &status);
  report("options_bad_convention", status);

  fastgex_options_init(&options);
  options.spot = -100;
  batch_total(&options, &status);
  report("options_negative_spot", status);

  fastgex_options_init(&options);
  options.spot = 100;
  options.extra = "colour=blue";
  batch_total(&options, &status);
  report("options_unknown_key", status);

  options.extra = "n_levels=10";
  batch_total(&options, &status);
  report("options_levels_key_in_gex", status);

  options.extra = "rate=abc";
  batch_total(&options, &status);
  report("options_bad_number", status);

  options.extra = "on_invalid=maybe";
  batch_total(&options, &status);
  report("options_bad_on_invalid", status);

  options.extra = "rate=0.05; dividend_yield=0.01\nday_count=act365";
  double with_rate = batch_total(&options, &status);
  report("options_rate_ok", status);
  printf("CHECK rate_total %.17g\n", with_rate);

  /* invalid rows with on_invalid=raise */
  fastgex_options_init(&options);
  options.spot = 100;
  options.extra = "on_invalid=raise";
  make_chain(&chain);
  chain.implied_vol[2] = -1.0;
  report("gex_invalid_rows_raise",
         fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, NULL));

  /* the same rows dropped and counted by default */
  options.extra = NULL;
  make_chain(&chain);
  chain.implied_vol[2] = -1.0;
  struct ArrowArrayStream dropped;
  status = fastgex_gex_batch(&chain.array, &chain.schema, &options, &result, NULL, &dropped);
  report("gex_invalid_rows_dropped", status);
  if (status == FASTGEX_OK) {
    result.release(&result);
    dropped.release(&dropped);
  }
  return 0;
}

/* ---- threads ---------------------------------------------------------------------- */

#define N_THREADS 8
#define N_ROUNDS 25

typedef struct Expected {
  double batch_total;
  double contract_total;
  double gamma[N_ROWS];
  double cfunc_sum;
} Expected;

static Expected expected;

static int one_round(Expected* got) {
  fastgex_options options;
  fastgex_options_init(&options);
  options.spot = 100;
  int status;
  got->batch_total = batch_total(&options, &status);
  if (status != FASTGEX_OK) return status;
  status = fastgex_contract_gex(N_ROWS, 100, strike, implied_vol, time_to_expiry,
                                open_interest, is_call, 100, 0, 0, 0, 0, NULL,
                                &got->contract_total, NULL);
  if (status != FASTGEX_OK) return status;
  status = fastgex_gamma(N_ROWS, 100, strike, implied_vol, time_to_expiry, 0, 0, got->gamma,
                         NULL);
  if (status != FASTGEX_OK) return status;
  fastgex_gamma_fn gamma_fn;
  status = fastgex_gamma_function(&gamma_fn);
  if (status != FASTGEX_OK) return status;
  got->cfunc_sum = 0.0;
  for (int round = 0; round < 1000; round++) {
    for (int row = 0; row < N_ROWS; row++) {
      got->cfunc_sum += gamma_fn(100, strike[row], implied_vol[row], time_to_expiry[row], 0, 0);
    }
  }
  return FASTGEX_OK;
}

static void* worker(void* argument) {
  long* mismatches = (long*)argument;
  for (int round = 0; round < N_ROUNDS; round++) {
    Expected got;
    int status = one_round(&got);
    int same = status == FASTGEX_OK && got.batch_total == expected.batch_total &&
               got.contract_total == expected.contract_total &&
               got.cfunc_sum == expected.cfunc_sum &&
               memcmp(got.gamma, expected.gamma, sizeof got.gamma) == 0;
    if (!same) {
      fprintf(stderr, "mismatch: status %d %s\n", status, fastgex_last_error());
      (*mismatches)++;
    }
  }
  return NULL;
}

/* Threads that start before anyone called fastgex_init: init races with itself. */
static void* init_worker(void* argument) {
  int* status = (int*)argument;
  *status = fastgex_init();
  return NULL;
}

static int threads(void) {
  pthread_t handles[N_THREADS];
  int init_status[N_THREADS];
  for (int index = 0; index < N_THREADS; index++)
    pthread_create(&handles[index], NULL, init_worker, &init_status[index]);
  for (int index = 0; index < N_THREADS; index++) pthread_join(handles[index], NULL);
  for (int index = 0; index < N_THREADS; index++) {
    if (init_status[index] != FASTGEX_OK) {
      printf("THREADS init failed %s\n", fastgex_last_error());
      return 1;
    }
  }
  int status = one_round(&expected);
  if (status != FASTGEX_OK) {
    printf("THREADS reference failed %s\n", fastgex_last_error());
    return 1;
  }
  long mismatches[N_THREADS] = {0};
  for (int index = 0; index < N_THREADS; index++)
    pthread_create(&handles[index], NULL, worker, &mismatches[index]);
  long total = 0;
  for (int index = 0; index < N_THREADS; index++) {
    pthread_join(handles[index], NULL);
    total += mismatches[index];
  }
  printf("THREADS threads=%d rounds=%d mismatches=%ld total=%.17g contract_total=%.17g\n",
         N_THREADS, N_ROUNDS, total, expected.batch_total, expected.contract_total);
  return total == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "errors") == 0) return errors();
  if (argc == 2 && strcmp(argv[1], "threads") == 0) return threads();
  if (argc == 2 && strcmp(argv[1], "init") == 0) {
    int status = fastgex_init();
    report("init", status);
    report("after_failed_init", fastgex_gamma_function(NULL));
    return status == FASTGEX_OK ? 0 : 3;
  }
  fprintf(stderr, "usage: capi_test errors|threads|init\n");
  return 2;
}
