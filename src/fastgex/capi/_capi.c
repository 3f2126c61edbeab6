/*
 * The C side of libfastgex: the public functions of fastgex.h.
 *
 * cffi pastes this file into the module it generates (after Python.h and cffi's
 * embedding support, before the `fastgex__py_*` functions that call into Python). The
 * build prepends the FASTGEX_BAKED_* definitions. The wrappers here do what must not
 * depend on Python running: argument checks, the init state, the per-thread error
 * message, releasing inputs, and the compiled-function pointers.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastgex.h"

#if defined(__GNUC__)
#define FASTGEX_API __attribute__((visibility("default")))
#else
#define FASTGEX_API
#endif

/* Implemented in Python (fastgex.capi._embedded); cffi generates their bodies below. */
int fastgex__py_init(int* reached);
int fastgex__py_gex(int* reached, struct ArrowArrayStream* chain, struct ArrowArray* array,
                    struct ArrowSchema* schema, const fastgex_options* options,
                    struct ArrowArrayStream* by_underlying, struct ArrowArrayStream* by_strike,
                    struct ArrowArrayStream* dropped);
int fastgex__py_levels(int* reached, struct ArrowArrayStream* chain,
                       const fastgex_options* options, struct ArrowArrayStream* levels,
                       struct ArrowArrayStream* by_strike, struct ArrowArrayStream* profile);
int fastgex__py_gamma(int* reached, int64_t n, double spot, const double* strike,
                      const double* vol, const double* time_to_expiry, double rate,
                      double dividend_yield, double* gamma, int64_t* invalid);
int fastgex__py_contract_gex(int* reached, int64_t n, double spot, const double* strike,
                             const double* vol, const double* time_to_expiry,
                             const double* open_interest, const int8_t* is_call,
                             double multiplier, double rate, double dividend_yield,
                             int32_t convention, int32_t unit, double* gex, double* total,
                             int64_t* invalid);

#define FASTGEX_ERROR_SIZE 4096

/* Per thread: the Python code runs on the calling thread, so it writes here too. */
static __thread char fastgex__error[FASTGEX_ERROR_SIZE];

static pthread_mutex_t fastgex__init_lock = PTHREAD_MUTEX_INITIALIZER;
static int fastgex__state = 0; /* 0: not yet, 1: ready, -1: failed (final) */
static int fastgex__init_status = FASTGEX_OK;
static char fastgex__init_error[FASTGEX_ERROR_SIZE];
static fastgex_gamma_fn fastgex__gamma_fn = NULL;
static fastgex_black76_gamma_fn fastgex__black76_fn = NULL;

/* Called from Python too (see the cdef). */
static void fastgex__set_error(const char* message) {
  snprintf(fastgex__error, FASTGEX_ERROR_SIZE, "%s", message ? message : "");
}

static void fastgex__set_functions(fastgex_gamma_fn gamma, fastgex_black76_gamma_fn black76) {
  fastgex__gamma_fn = gamma;
  fastgex__black76_fn = black76;
}

static int fastgex__ready(void) {
  if (__atomic_load_n(&fastgex__state, __ATOMIC_ACQUIRE) == 1) return 1;
  fastgex__set_error(
      __atomic_load_n(&fastgex__state, __ATOMIC_ACQUIRE) == -1
          ? "fastgex_init() failed earlier; see its message"
          : "fastgex_init() has not been called");
  return 0;
}

static int fastgex__not_reached(void) {
  fastgex__set_error(
      "the embedded Python interpreter is not running (cffi start-up failed; details on "
      "stderr)");
  return FASTGEX_ERROR_PYTHON_START;
}

static void fastgex__release_stream(struct ArrowArrayStream* stream) {
  if (stream != NULL && stream->release != NULL) stream->release(stream);
}

static void fastgex__clear_stream(struct ArrowArrayStream* stream) {
  if (stream != NULL) memset(stream, 0, sizeof(*stream));
}

/* Append `part` and a ':' to a heap string; NULL on allocation failure. */
static char* fastgex__append_path(char* joined, const char* part) {
  size_t old_length = joined ? strlen(joined) : 0;
  size_t add = strlen(part);
  if (add == 0) return joined;
  char* grown = (char*)realloc(joined, old_length + add + 2);
  if (grown == NULL) {
    free(joined);
    return NULL;
  }
  if (old_length > 0) grown[old_length++] = ':';
  memcpy(grown + old_length, part, add + 1);
  return grown;
}

/* Start CPython ourselves (cffi then finds it running) so that a failed start-up is a
 * status with a message, not only a print, and so that the venv's site-packages (where
 * _cffi_backend lives) is on sys.path before cffi imports it. */
static int fastgex__start_python(void) {
  if (Py_IsInitialized()) return FASTGEX_OK; /* loaded into a Python process */
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0; /* the host owns its signals */
  config.parse_argv = 0;
  PyStatus status = PyStatus_Ok();

  /* Not the host's environment: left alone, Python would look for "python3" on PATH and
   * take the site-packages of whatever virtualenv that belongs to, and the user's
   * ~/.local site-packages; the build's base interpreter and site dirs are used instead. */
  config.user_site_directory = 0;
  status = PyConfig_SetBytesString(&config, &config.program_name, FASTGEX_BAKED_PROGRAM);
  const char* home = getenv("FASTGEX_PYTHONHOME");
  if (home == NULL || home[0] == '\0') home = getenv("PYTHONHOME");
  if (home == NULL || home[0] == '\0') home = FASTGEX_BAKED_HOME;
  if (!PyStatus_Exception(status) && home[0] != '\0')
    status = PyConfig_SetBytesString(&config, &config.home, home);

  const char* paths = getenv("FASTGEX_PYTHONPATH");
  if (paths == NULL) paths = FASTGEX_BAKED_PATHS;
  char* joined = fastgex__append_path(NULL, "");
  joined = fastgex__append_path(joined, paths);
  const char* inherited = getenv("PYTHONPATH");
  if (inherited != NULL) joined = fastgex__append_path(joined, inherited);
  if (!PyStatus_Exception(status) && joined != NULL)
    status = PyConfig_SetBytesString(&config, &config.pythonpath_env, joined);
  free(joined);

  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    snprintf(fastgex__init_error, FASTGEX_ERROR_SIZE,
             "the embedded Python interpreter did not start: %s%s%s (home=%s; set "
             "FASTGEX_PYTHONHOME / FASTGEX_PYTHONPATH to override the build's paths)",
             status.func ? status.func : "", status.func ? ": " : "",
             status.err_msg ? status.err_msg : "exit requested", home);
    return FASTGEX_ERROR_PYTHON_START;
  }
  PyEval_SaveThread(); /* release the GIL: every call takes it through cffi */
  return FASTGEX_OK;
}

FASTGEX_API int fastgex_init(void) {
  pthread_mutex_lock(&fastgex__init_lock);
  int status;
  if (fastgex__state == 1) {
    status = FASTGEX_OK;
  } else if (fastgex__state == -1) {
    status = fastgex__init_status;
    fastgex__set_error(fastgex__init_error);
  } else {
    status = fastgex__start_python();
    if (status == FASTGEX_OK) {
      int reached = 0;
      status = fastgex__py_init(&reached);
      if (!reached) status = fastgex__not_reached();
      snprintf(fastgex__init_error, FASTGEX_ERROR_SIZE, "%s", fastgex__error);
    }
    if (status == FASTGEX_OK && (fastgex__gamma_fn == NULL || fastgex__black76_fn == NULL)) {
      status = FASTGEX_ERROR_INTERNAL;
      snprintf(fastgex__init_error, FASTGEX_ERROR_SIZE, "init did not register the kernels");
    }
    fastgex__init_status = status;
    fastgex__set_error(status == FASTGEX_OK ? "" : fastgex__init_error);
    __atomic_store_n(&fastgex__state, status == FASTGEX_OK ? 1 : -1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&fastgex__init_lock);
  return status;
}

FASTGEX_API const char* fastgex_version(void) { return FASTGEX_BAKED_VERSION; }

FASTGEX_API int fastgex_abi_version(void) { return FASTGEX_ABI_VERSION; }

FASTGEX_API const char* fastgex_last_error(void) { return fastgex__error; }

FASTGEX_API const char* fastgex_status_name(int status) {
  switch (status) {
    case FASTGEX_OK: return "FASTGEX_OK";
    case FASTGEX_ERROR_NOT_INITIALIZED: return "FASTGEX_ERROR_NOT_INITIALIZED";
    case FASTGEX_ERROR_PYTHON_START: return "FASTGEX_ERROR_PYTHON_START";
    case FASTGEX_ERROR_NULL_POINTER: return "FASTGEX_ERROR_NULL_POINTER";
    case FASTGEX_ERROR_INVALID_ARGUMENT: return "FASTGEX_ERROR_INVALID_ARGUMENT";
    case FASTGEX_ERROR_ARROW: return "FASTGEX_ERROR_ARROW";
    case FASTGEX_ERROR_CHAIN: return "FASTGEX_ERROR_CHAIN";
    case FASTGEX_ERROR_INVALID_ROWS: return "FASTGEX_ERROR_INVALID_ROWS";
    case FASTGEX_ERROR_INTERNAL: return "FASTGEX_ERROR_INTERNAL";
    default: return "unknown status";
  }
}

FASTGEX_API void fastgex_options_init(fastgex_options* options) {
  if (options == NULL) return;
  memset(options, 0, sizeof(*options));
  options->version = FASTGEX_OPTIONS_VERSION;
  options->spot = NAN;
  options->snapshot_time_ns = FASTGEX_NO_TIME;
}

FASTGEX_API int fastgex_gex(struct ArrowArrayStream* chain, const fastgex_options* options,
                            struct ArrowArrayStream* by_underlying,
                            struct ArrowArrayStream* by_strike,
                            struct ArrowArrayStream* dropped) {
  int status;
  fastgex__clear_stream(by_underlying);
  fastgex__clear_stream(by_strike);
  fastgex__clear_stream(dropped);
  if (!fastgex__ready()) {
    status = FASTGEX_ERROR_NOT_INITIALIZED;
  } else if (chain == NULL || chain->release == NULL || by_underlying == NULL) {
    fastgex__set_error(chain == NULL ? "chain is NULL"
                       : chain->release == NULL ? "chain stream is already released"
                                                : "by_underlying output is NULL");
    status = FASTGEX_ERROR_NULL_POINTER;
  } else {
    int reached = 0;
    status = fastgex__py_gex(&reached, chain, NULL, NULL, options, by_underlying, by_strike,
                             dropped);
    if (!reached) status = fastgex__not_reached();
  }
  fastgex__release_stream(chain);
  return status;
}

FASTGEX_API int fastgex_gex_batch(struct ArrowArray* chain, struct ArrowSchema* schema,
                                  const fastgex_options* options,
                                  struct ArrowArrayStream* by_underlying,
                                  struct ArrowArrayStream* by_strike,
                                  struct ArrowArrayStream* dropped) {
  int status;
  fastgex__clear_stream(by_underlying);
  fastgex__clear_stream(by_strike);
  fastgex__clear_stream(dropped);
  if (!fastgex__ready()) {
    status = FASTGEX_ERROR_NOT_INITIALIZED;
  } else if (chain == NULL || schema == NULL || by_underlying == NULL) {
    fastgex__set_error(chain == NULL ? "chain array is NULL"
                       : schema == NULL ? "chain schema is NULL"
                                        : "by_underlying output is NULL");
    status = FASTGEX_ERROR_NULL_POINTER;
  } else if (chain->release == NULL || schema->release == NULL) {
    fastgex__set_error("chain array or schema is already released");
    status = FASTGEX_ERROR_NULL_POINTER;
  } else {
    int reached = 0;
    status = fastgex__py_gex(&reached, NULL, chain, schema, options, by_underlying, by_strike,
                             dropped);
    if (!reached) status = fastgex__not_reached();
  }
  if (chain != NULL && chain->release != NULL) chain->release(chain);
  if (schema != NULL && schema->release != NULL) schema->release(schema);
  return status;
}

FASTGEX_API int fastgex_levels(struct ArrowArrayStream* chain, const fastgex_options* options,
                               struct ArrowArrayStream* levels,
                               struct ArrowArrayStream* by_strike,
                               struct ArrowArrayStream* profile) {
  int status;
  fastgex__clear_stream(levels);
  fastgex__clear_stream(by_strike);
  fastgex__clear_stream(profile);
  if (!fastgex__ready()) {
    status = FASTGEX_ERROR_NOT_INITIALIZED;
  } else if (chain == NULL || chain->release == NULL || levels == NULL) {
    fastgex__set_error(chain == NULL ? "chain is NULL"
                       : chain->release == NULL ? "chain stream is already released"
                                                : "levels output is NULL");
    status = FASTGEX_ERROR_NULL_POINTER;
  } else {
    int reached = 0;
    status = fastgex__py_levels(&reached, chain, options, levels, by_strike, profile);
    if (!reached) status = fastgex__not_reached();
  }
  fastgex__release_stream(chain);
  return status;
}

/* Shared checks of the raw-array calls: 0 if the call may go on. */
static int fastgex__check_arrays(int64_t n, int n_pointers, const void** pointers,
                                 const char** names) {
  if (!fastgex__ready()) return FASTGEX_ERROR_NOT_INITIALIZED;
  if (n < 0) {
    fastgex__set_error("n is negative");
    return FASTGEX_ERROR_INVALID_ARGUMENT;
  }
  for (int index = 0; index < n_pointers; index++) {
    if (pointers[index] == NULL && n > 0) {
      snprintf(fastgex__error, FASTGEX_ERROR_SIZE, "%s is NULL", names[index]);
      return FASTGEX_ERROR_NULL_POINTER;
    }
  }
  return FASTGEX_OK;
}

FASTGEX_API int fastgex_gamma(int64_t n, double spot, const double* strike, const double* vol,
                              const double* time_to_expiry, double rate, double dividend_yield,
                              double* gamma, int64_t* invalid) {
  const void* pointers[] = {strike, vol, time_to_expiry, gamma};
  const char* names[] = {"strike", "vol", "time_to_expiry", "gamma"};
  int status = fastgex__check_arrays(n, 4, pointers, names);
  if (status != FASTGEX_OK) return status;
  if (invalid != NULL) *invalid = 0;
  if (n == 0) return FASTGEX_OK;
  int reached = 0;
  status = fastgex__py_gamma(&reached, n, spot, strike, vol, time_to_expiry, rate,
                             dividend_yield, gamma, invalid);
  return reached ? status : fastgex__not_reached();
}

FASTGEX_API int fastgex_contract_gex(int64_t n, double spot, const double* strike,
                                     const double* vol, const double* time_to_expiry,
                                     const double* open_interest, const int8_t* is_call,
                                     double multiplier, double rate, double dividend_yield,
                                     int32_t convention, int32_t unit, double* gex,
                                     double* total, int64_t* invalid) {
  const void* pointers[] = {strike, vol, time_to_expiry, open_interest, is_call};
  const char* names[] = {"strike", "vol", "time_to_expiry", "open_interest", "is_call"};
  int status = fastgex__check_arrays(n, 5, pointers, names);
  if (status != FASTGEX_OK) return status;
  if (total == NULL) {
    fastgex__set_error("total is NULL");
    return FASTGEX_ERROR_NULL_POINTER;
  }
  *total = 0.0;
  if (invalid != NULL) *invalid = 0;
  int reached = 0;
  status = fastgex__py_contract_gex(&reached, n, spot, strike, vol, time_to_expiry,
                                    open_interest, is_call, multiplier, rate, dividend_yield,
                                    convention, unit, gex, total, invalid);
  return reached ? status : fastgex__not_reached();
}

FASTGEX_API int fastgex_gamma_function(fastgex_gamma_fn* out) {
  if (!fastgex__ready()) return FASTGEX_ERROR_NOT_INITIALIZED;
  if (out == NULL) {
    fastgex__set_error("out is NULL");
    return FASTGEX_ERROR_NULL_POINTER;
  }
  *out = fastgex__gamma_fn;
  return FASTGEX_OK;
}

FASTGEX_API int fastgex_black76_gamma_function(fastgex_black76_gamma_fn* out) {
  if (!fastgex__ready()) return FASTGEX_ERROR_NOT_INITIALIZED;
  if (out == NULL) {
    fastgex__set_error("out is NULL");
    return FASTGEX_ERROR_NULL_POINTER;
  }
  *out = fastgex__black76_fn;
  return FASTGEX_OK;
}
