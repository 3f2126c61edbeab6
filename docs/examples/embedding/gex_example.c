/*
 * gex_example.c - GEX of a chain built in C, through the Arrow C stream interface.
 *
 *   python -m fastgex.capi build --out /opt/fastgex
 *   export PKG_CONFIG_PATH=/opt/fastgex/lib/pkgconfig
 *   cc -I. gex_example.c $(pkg-config --cflags --libs fastgex) -o gex_example
 *   ./gex_example
 *
 * Prints the input rows (ROW lines), the totals per underlying (TOTAL lines) and the
 * per-strike table (STRIKE lines); the test suite rebuilds the chain from the ROW lines
 * and checks the other lines against fastgex.gex() in Python.
 */
#include <stdio.h>

#include "arrow_chain.h"
#include "fastgex.h"

#define N_ROWS 8

static int fail(const char* what, int status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, fastgex_status_name(status),
          fastgex_last_error());
  return 1;
}

/* Print every row of a result stream, the columns named in `columns` (float64, int64 or
 * utf8, no nulls), then release the stream. */
static int print_stream(const char* tag, struct ArrowArrayStream* stream, int n_columns,
                        const char* const* columns) {
  struct ArrowSchema schema;
  if (stream->get_schema(stream, &schema) != 0) return -1;
  int indices[8];
  for (int column = 0; column < n_columns; column++) {
    indices[column] = arrow_column_index(&schema, columns[column]);
    if (indices[column] < 0) return -1;
  }
  for (;;) {
    struct ArrowArray batch;
    if (stream->get_next(stream, &batch) != 0) return -1;
    if (batch.release == NULL) break; /* end of stream */
    for (int64_t row = 0; row < batch.length; row++) {
      printf("%s", tag);
      for (int column = 0; column < n_columns; column++) {
        const struct ArrowArray* values = batch.children[indices[column]];
        const char* format = schema.children[indices[column]]->format;
        if (format[0] == 'g') {
          printf(" %.17g", arrow_float64(values, row));
        } else if (format[0] == 'l') {
          printf(" %lld", (long long)arrow_int64(values, row));
        } else {
          char text[64];
          arrow_utf8(values, row, text, sizeof text);
          printf(" %s", text);
        }
      }
      printf("\n");
    }
    batch.release(&batch);
  }
  schema.release(&schema);
  stream->release(stream);
  return 0;
}

int main(void) {
  int status = fastgex_init(); /* starts Python, warms the kernels (~1 s when cached) */
  if (status != FASTGEX_OK) return fail("fastgex_init", status);
  printf("VERSION %s ABI %d\n", fastgex_version(), fastgex_abi_version());

  const char* const underlying[N_ROWS] = {"AAA", "AAA", "AAA", "AAA",
                                          "BBB", "BBB", "BBB", "BBB"};
  const double strike[N_ROWS] = {95.0, 95.0, 105.0, 105.0, 45.0, 50.0, 50.0, 55.0};
  const char option_type[N_ROWS] = {'C', 'P', 'C', 'P', 'P', 'C', 'P', 'C'};
  const double implied_vol[N_ROWS] = {0.22, 0.25, 0.18, 0.21, 0.45, 0.40, 0.42, 0.38};
  const double time_to_expiry[N_ROWS] = {0.05, 0.05, 0.3, 0.3, 0.02, 0.1, 0.1, 1.0};
  const double open_interest[N_ROWS] = {1200, 800, 500, 2500, 300, 4000, 150, 700};
  for (int row = 0; row < N_ROWS; row++) {
    printf("ROW %s %.17g %c %.17g %.17g %.17g\n", underlying[row], strike[row],
           option_type[row], implied_vol[row], time_to_expiry[row], open_interest[row]);
  }

  ArrowChain chain;
  if (arrow_chain_make(&chain, N_ROWS, underlying, strike, option_type, implied_vol,
                       time_to_expiry, open_interest) != 0) {
    return 1;
  }
  struct ArrowArrayStream input;
  arrow_chain_stream(&chain, &input);

  fastgex_options options;
  fastgex_options_init(&options);
  options.convention = FASTGEX_LONG_CALLS_SHORT_PUTS;
  options.extra = "spot=AAA:100,BBB:50";

  struct ArrowArrayStream totals, strikes;
  status = fastgex_gex(&input, &options, &totals, &strikes, NULL); /* consumes input */
  if (status != FASTGEX_OK) return fail("fastgex_gex", status);

  const char* const total_columns[] = {"underlying", "spot", "total_gex", "call_gex",
                                       "put_gex", "contracts"};
  const char* const strike_columns[] = {"underlying", "strike", "net_gex",
                                        "cumulative_net_gex"};
  if (print_stream("TOTAL", &totals, 6, total_columns) != 0) return 1;
  if (print_stream("STRIKE", &strikes, 4, strike_columns) != 0) return 1;
  return 0;
}
