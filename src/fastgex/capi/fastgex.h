/*
 * fastgex.h - C ABI of fastgex (dealer gamma exposure over option chains).
 *
 * Build the library with `python -m fastgex.capi build --out DIR`; link with
 * `$(pkg-config --cflags --libs fastgex)` (DIR/lib/pkgconfig) or find_package(fastgex)
 * (DIR/lib/cmake/fastgex). The library embeds CPython (cffi embedding mode) and calls
 * the public Python API; it finds the installed package by itself (paths baked in at
 * build time, overridable with FASTGEX_PYTHONPATH / FASTGEX_PYTHONHOME /
 * FASTGEX_NUMBA_CACHE_DIR).
 *
 * Rules every function follows:
 *   - it returns an int status (enum fastgex_status); FASTGEX_OK is 0;
 *   - on failure fastgex_last_error() (per thread) says why; no signal, no abort and no
 *     Python exception ever crosses this boundary;
 *   - everything but fastgex_init, fastgex_version, fastgex_abi_version,
 *     fastgex_last_error, fastgex_status_name and fastgex_options_init returns
 *     FASTGEX_ERROR_NOT_INITIALIZED until fastgex_init() has succeeded;
 *   - input Arrow streams / arrays are CONSUMED: released (or moved) when the call
 *     returns, whatever the status;
 *   - output streams are written only on FASTGEX_OK (their release is NULL otherwise)
 *     and belong to the caller, who must call out->release(out);
 *   - calls from several threads at once are allowed.
 *
 * Versioning: FASTGEX_ABI_VERSION changes when a signature or struct layout changes;
 * fastgex_options carries its own version field.
 */
#ifndef FASTGEX_H
#define FASTGEX_H

#include <stddef.h>
#include <stdint.h>

#define FASTGEX_ABI_VERSION 1
#define FASTGEX_OPTIONS_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Arrow C data interface (verbatim from the Arrow specification) ---------------- */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;
  void (*release)(struct ArrowSchema*);
  void* private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;
  void (*release)(struct ArrowArray*);
  void* private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE

struct ArrowArrayStream {
  int (*get_schema)(struct ArrowArrayStream*, struct ArrowSchema* out);
  int (*get_next)(struct ArrowArrayStream*, struct ArrowArray* out);
  const char* (*get_last_error)(struct ArrowArrayStream*);
  void (*release)(struct ArrowArrayStream*);
  void* private_data;
};

#endif /* ARROW_C_STREAM_INTERFACE */

/* ---- status codes ------------------------------------------------------------------ */
enum fastgex_status {
  FASTGEX_OK = 0,
  FASTGEX_ERROR_NOT_INITIALIZED = 1, /* fastgex_init() not called, or it failed */
  FASTGEX_ERROR_PYTHON_START = 2,    /* the embedded interpreter or fastgex did not start */
  FASTGEX_ERROR_NULL_POINTER = 3,    /* a required pointer is NULL */
  FASTGEX_ERROR_INVALID_ARGUMENT = 4,/* bad option, length, enum value... */
  FASTGEX_ERROR_ARROW = 5,           /* the Arrow data could not be imported or is invalid */
  FASTGEX_ERROR_CHAIN = 6,           /* missing column, wrong column type, missing spot... */
  FASTGEX_ERROR_INVALID_ROWS = 7,    /* on_invalid=raise and some rows are invalid */
  FASTGEX_ERROR_INTERNAL = 8         /* a bug: please report it with fastgex_last_error() */
};

/* Dealer sign conventions (see the methodology docs). */
enum fastgex_convention {
  FASTGEX_SHORT_CALLS_LONG_PUTS = 0, /* default */
  FASTGEX_LONG_CALLS_SHORT_PUTS = 1,
  FASTGEX_SHORT_ALL = 2
};

/* GEX units. */
enum fastgex_unit {
  FASTGEX_DOLLARS_PER_1PCT = 0, /* default: $ of delta per 1% move */
  FASTGEX_DOLLARS_PER_POINT = 1,
  FASTGEX_SHARES_PER_DOLLAR = 2
};

enum fastgex_gamma_source {
  FASTGEX_GAMMA_MODEL = 0, /* default: BSM / Black-76 gamma from implied_vol */
  FASTGEX_GAMMA_COLUMN = 1 /* the chain's own gamma column */
};

/* snapshot_time_ns value meaning "use the chain's snapshot_time column". */
#define FASTGEX_NO_TIME INT64_MIN

/*
 * Options of the chain-level calls. Always start from fastgex_options_init(), then set
 * fields; a NULL options pointer means all defaults.
 *
 * extra: NULL or "key=value" pairs separated by ';' or newlines, for every other
 * keyword of fastgex.gex() / fastgex.levels():
 *   rate, dividend_yield  number, or per underlying "SPX:0.05,NDX:0.04"
 *   spot                  per underlying "SPX:4700,NDX:16000" (instead of the spot field)
 *   day_count             act365 | bus252 | bus262
 *   settlement            pm | am | HH:MM
 *   settlement_tz         e.g. America/New_York, UTC
 *   min_time_to_expiry    years
 *   on_invalid            drop | raise
 *   buckets               default | "name:days,name:days,..."
 *   views                 "all,ex_next_expiry,ex_next_monthly"
 * and for fastgex_levels only:
 *   n_levels, level_range ("0.8,1.2"), vol_model (sticky_strike | sticky_moneyness),
 *   walls_relative_to_spot (true | false), oi_cluster_count, exclude
 * An unknown key is FASTGEX_ERROR_INVALID_ARGUMENT.
 */
typedef struct fastgex_options {
  uint32_t version;         /* FASTGEX_OPTIONS_VERSION */
  int32_t convention;       /* enum fastgex_convention */
  int32_t unit;             /* enum fastgex_unit */
  int32_t gamma_source;     /* enum fastgex_gamma_source */
  double spot;              /* > 0: spot of a one-underlying chain; NaN: the chain's spot column */
  int64_t snapshot_time_ns; /* ns since 1970-01-01 UTC, or FASTGEX_NO_TIME */
  const char* extra;        /* see above; NULL for none */
} fastgex_options;

/* Per-contract gamma, the numba-compiled scalar formulas (NaN on invalid input). */
typedef double (*fastgex_gamma_fn)(double spot, double strike, double vol,
                                   double time_to_expiry, double rate,
                                   double dividend_yield);
typedef double (*fastgex_black76_gamma_fn)(double forward, double strike, double vol,
                                           double time_to_expiry, double rate);

/* ---- library ----------------------------------------------------------------------- */

/* Start the embedded interpreter, import fastgex and compile (or load from the cache)
 * every kernel the calls below use (the Arrow paths' read-only ones too). Idempotent
 * and thread-safe; a failure is final for the process (the status is returned again). */
int fastgex_init(void);

/* The fastgex version the library was built from, e.g. "0.1.0" (static storage). */
const char* fastgex_version(void);

/* FASTGEX_ABI_VERSION of the library (compare with the header's). */
int fastgex_abi_version(void);

/* Message of the last failed call on this thread ("" if none); valid until the next
 * fastgex call on the same thread. */
const char* fastgex_last_error(void);

/* "FASTGEX_OK", "FASTGEX_ERROR_CHAIN", ... ("unknown status" otherwise). */
const char* fastgex_status_name(int status);

/* Defaults: version, conventions 0, spot NaN, snapshot FASTGEX_NO_TIME, extra NULL. */
void fastgex_options_init(fastgex_options* options);

/* ---- chains through the Arrow C stream / C data interface -------------------------- */

/* GEX of a chain (canonical column names, see the schema docs). Outputs:
 *   by_underlying (required): underlying, spot, total_gex, call_gex, put_gex,
 *                             contracts, dropped
 *   by_strike (NULL: not computed): underlying, strike, call_gex, put_gex, net_gex,
 *                             cumulative_net_gex, contracts
 *   dropped (NULL: not returned): underlying, reason, count
 */
int fastgex_gex(struct ArrowArrayStream* chain, const fastgex_options* options,
                struct ArrowArrayStream* by_underlying, struct ArrowArrayStream* by_strike,
                struct ArrowArrayStream* dropped);

/* The same for one record batch (a struct array and its schema). */
int fastgex_gex_batch(struct ArrowArray* chain, struct ArrowSchema* schema,
                      const fastgex_options* options, struct ArrowArrayStream* by_underlying,
                      struct ArrowArrayStream* by_strike, struct ArrowArrayStream* dropped);

/* Levels (flip strike, zero gamma, walls, regime...) per underlying and view/bucket.
 * levels required; by_strike and profile may be NULL. Table layouts: the levels docs. */
int fastgex_levels(struct ArrowArrayStream* chain, const fastgex_options* options,
                   struct ArrowArrayStream* levels, struct ArrowArrayStream* by_strike,
                   struct ArrowArrayStream* profile);

/* ---- raw arrays (hot path) --------------------------------------------------------- */

/* BSM gamma per share of n contracts of one underlying. Invalid rows (non-positive or
 * non-finite strike, vol or time) get NaN and are counted in *invalid (may be NULL). */
int fastgex_gamma(int64_t n, double spot, const double* strike, const double* vol,
                  const double* time_to_expiry, double rate, double dividend_yield,
                  double* gamma, int64_t* invalid);

/* Signed GEX of n contracts of one underlying: is_call[i] is 1 (call) or 0 (put).
 * gex[i] = sign * open_interest * multiplier * gamma * unit factor; *total is their
 * compensated, deterministic sum (the kernel of the chain calls). Invalid rows
 * (non-positive or non-finite strike, vol or time, negative or non-finite open interest,
 * is_call not 0/1) get 0.0 in gex, add nothing to *total and are counted in *invalid
 * (may be NULL). gex may be NULL when only the total is wanted. No floor is applied to
 * time_to_expiry. */
int fastgex_contract_gex(int64_t n, double spot, const double* strike, const double* vol,
                         const double* time_to_expiry, const double* open_interest,
                         const int8_t* is_call, double multiplier, double rate,
                         double dividend_yield, int32_t convention, int32_t unit,
                         double* gex, double* total, int64_t* invalid);

/* Addresses of the compiled per-contract gamma functions, for callers' own loops. They
 * need no lock and no interpreter: call them from any thread. */
int fastgex_gamma_function(fastgex_gamma_fn* out);
int fastgex_black76_gamma_function(fastgex_black76_gamma_fn* out);

#ifdef __cplusplus
}
#endif

#endif /* FASTGEX_H */
