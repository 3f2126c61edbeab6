// levels_example.cpp - fastgex from C++: raw arrays, the compiled gamma in your own loop,
// and levels of a chain passed through the Arrow C stream interface.
//
//   python -m fastgex.capi build --out /opt/fastgex
//   export PKG_CONFIG_PATH=/opt/fastgex/lib/pkgconfig
//   c++ -std=c++17 -I. levels_example.cpp $(pkg-config --cflags --libs fastgex) -o levels_example
//   ./levels_example
//
// Prints ROW lines (the chain), then CONTRACT_TOTAL, GAMMA, CFUNC_SUM and LEVEL lines;
// the test suite checks them against fastgex.reference and fastgex.levels().
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "arrow_chain.h"
#include "fastgex.h"

namespace {

// Throws with fastgex's message when a call fails.
void check(int status, const char* what) {
  if (status != FASTGEX_OK) {
    throw std::runtime_error(std::string(what) + ": " + fastgex_status_name(status) + ": " +
                             fastgex_last_error());
  }
}

// Owns an ArrowArrayStream (or ArrowSchema / ArrowArray) and releases it once.
template <typename Arrow>
struct Owned {
  Arrow value{};
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (value.release != nullptr) value.release(&value);
  }
  Arrow* get() { return &value; }
};

bool is_valid(const ArrowArray* column, int64_t row) {
  const auto* validity = static_cast<const uint8_t*>(column->buffers[0]);
  int64_t bit = column->offset + row;
  return validity == nullptr || ((validity[bit / 8] >> (bit % 8)) & 1) != 0;
}

}  // namespace

int main() {
  try {
    check(fastgex_init(), "fastgex_init");

    // A deterministic chain: one underlying, calls and puts on a strike ladder.
    const double spot = 100.0;
    const int n = 40;
    std::vector<const char*> underlying(n, "XYZ");
    std::vector<double> strike(n), vol(n), time_to_expiry(n), open_interest(n);
    std::vector<char> option_type(n);
    std::vector<int8_t> is_call(n);
    for (int row = 0; row < n; ++row) {
      int step = row / 2;
      strike[row] = 80.0 + 2.0 * step;
      is_call[row] = static_cast<int8_t>(row % 2 == 0);
      option_type[row] = is_call[row] ? 'C' : 'P';
      vol[row] = 0.18 + 0.004 * std::abs(step - 10);
      time_to_expiry[row] = (step % 3 == 0) ? 0.02 : 0.25;
      open_interest[row] = 100.0 * (1 + (row * 7) % 13) * (is_call[row] ? 1.0 : 0.6);
      std::printf("ROW XYZ %.17g %c %.17g %.17g %.17g\n", strike[row], option_type[row],
                  vol[row], time_to_expiry[row], open_interest[row]);
    }

    // 1. Signed GEX of every contract through the raw-array call (the hot path).
    std::vector<double> gex(n);
    double total = 0.0;
    int64_t invalid = 0;
    check(fastgex_contract_gex(n, spot, strike.data(), vol.data(), time_to_expiry.data(),
                               open_interest.data(), is_call.data(), 100.0, 0.0, 0.0,
                               FASTGEX_SHORT_CALLS_LONG_PUTS, FASTGEX_DOLLARS_PER_1PCT,
                               gex.data(), &total, &invalid),
          "fastgex_contract_gex");
    std::printf("CONTRACT_TOTAL %.17g %lld\n", total, static_cast<long long>(invalid));

    // 2. Per-contract gamma into a caller's buffer.
    std::vector<double> gamma(n);
    check(fastgex_gamma(n, spot, strike.data(), vol.data(), time_to_expiry.data(), 0.0, 0.0,
                        gamma.data(), nullptr),
          "fastgex_gamma");
    for (int row = 0; row < n; ++row) std::printf("GAMMA %d %.17g\n", row, gamma[row]);

    // 3. The compiled scalar gamma in our own loop: no interpreter, no lock.
    fastgex_gamma_fn gamma_fn = nullptr;
    check(fastgex_gamma_function(&gamma_fn), "fastgex_gamma_function");
    double sum = 0.0;
    for (int row = 0; row < n; ++row) {
      sum += gamma_fn(spot, strike[row], vol[row], time_to_expiry[row], 0.0, 0.0);
    }
    std::printf("CFUNC_SUM %.17g\n", sum);

    // 4. Levels of the same chain, handed over as an Arrow C stream.
    ArrowChain chain;
    if (arrow_chain_make(&chain, n, underlying.data(), strike.data(), option_type.data(),
                         vol.data(), time_to_expiry.data(), open_interest.data()) != 0) {
      throw std::runtime_error("chain does not fit");
    }
    ArrowArrayStream input{};
    arrow_chain_stream(&chain, &input);
    fastgex_options options;
    fastgex_options_init(&options);
    options.spot = spot;
    options.extra = "n_levels=41; level_range=0.8,1.2";
    Owned<ArrowArrayStream> levels;
    check(fastgex_levels(&input, &options, levels.get(), nullptr, nullptr), "fastgex_levels");

    Owned<ArrowSchema> schema;
    if (levels.value.get_schema(levels.get(), schema.get()) != 0) return 1;
    const char* names[] = {"total_gex", "flip_strike", "zero_gamma", "key_gamma_strike",
                           "call_wall", "put_wall"};
    for (;;) {
      Owned<ArrowArray> batch;
      if (levels.value.get_next(levels.get(), batch.get()) != 0) return 1;
      if (batch.value.release == nullptr) break;
      for (int64_t row = 0; row < batch.value.length; ++row) {
        for (const char* name : names) {
          int column = arrow_column_index(schema.get(), name);
          if (column < 0) return 1;
          const ArrowArray* values = batch.value.children[column];
          if (is_valid(values, row)) {
            std::printf("LEVEL %s %.17g\n", name, arrow_float64(values, row));
          } else {
            std::printf("LEVEL %s null\n", name);
          }
        }
      }
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
  return 0;
}
