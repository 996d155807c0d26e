#include "workloads/requests.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>  // getpid: each test process writes its own files

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace tessera::workloads {
namespace {

using ::testing::HasSubstr;

std::string write(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("tessera_requests_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(path) << text;
  return path.string();
}

// The message of what `f` throws, or "no error".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(Trace, ReadsTheAzureSchemaWithArrivalsFromTheFirstRequest) {
  const std::string path = write("azure.csv",
                                 "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:15:46.6805900,374,44\n"
                                 "2023-11-16 18:15:50.9951690,396,109\r\n"
                                 "2023-11-16 23:59:59.5000000,879,55\n"
                                 "2023-11-17 00:00:00.2500000,91,16\n\n");
  const std::vector<Request> r = read_trace(path);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].arrival, 0.0);
  EXPECT_NEAR(r[1].arrival, 4.314579, 1e-6);
  // Across midnight: 5 h 44 min 12.8194100 s, then 0.75 s more.
  EXPECT_NEAR(r[2].arrival, 5 * 3600 + 44 * 60 + 12.81941, 1e-6);
  EXPECT_NEAR(r[3].arrival - r[2].arrival, 0.75, 1e-6);
  EXPECT_EQ(r[1].prompt_tokens, 396);
  EXPECT_EQ(r[1].output_tokens, 109);
  EXPECT_EQ(r[3].id, 3);
}

TEST(Trace, ColumnsInAnyOrderAndSecondsAsNumbers) {
  const std::string path = write("order.csv",
                                 "GeneratedTokens,Extra,TIMESTAMP,ContextTokens\n"
                                 "10,x,100.5,20\n"
                                 "11,y,101,21\n");
  const std::vector<Request> r = read_trace(path);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_DOUBLE_EQ(r[1].arrival, 0.5);
  EXPECT_EQ(r[0].prompt_tokens, 20);
  EXPECT_EQ(r[0].output_tokens, 10);
}

TEST(Trace, BadTracesNameTheFileAndLine) {
  const std::string header = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const struct {
    const char* name;
    std::string text, error;
  } cases[] = {
      {"missing.csv", "TIMESTAMP,ContextTokens\n1,2\n", ":1: the header lacks the column(s) GeneratedTokens"},
      {"unsorted.csv", header + "5,10,10\n4,10,10\n", ":3: time goes backwards"},
      {"negative.csv", header + "-5,10,10\n", ":2: a negative TIMESTAMP"},
      {"text.csv", header + "1,ten,10\n", ":2: ContextTokens 'ten' is not a whole number"},
      {"time.csv", header + "yesterday,10,10\n", ":2: TIMESTAMP 'yesterday' is neither a date and time"},
      {"nan.csv", header + "2023-11-16 18:17:nan,10,10\n", ":2: TIMESTAMP '2023-11-16 18:17:nan' is neither"},
      {"zero.csv", header + "1,10,0\n", ":2: GeneratedTokens 0 is below 1"},
      {"huge.csv", header + "1,4000000000,10\n", ":2: ContextTokens 4000000000 is above 1073741824 tokens"},
      {"fields.csv", header + "1,10\n", ":2: 2 fields where the header has 3"},
      {"empty.csv", "", ":1: an empty trace"},
      {"header.csv", header, ":1: a trace without requests"},
  };
  for (const auto& c : cases) {
    const std::string path = write(c.name, c.text);
    EXPECT_THAT(error_of([&] { read_trace(path); }), HasSubstr(path + c.error)) << c.name;
  }
  EXPECT_THAT(error_of([] { read_trace("/nonexistent/trace.csv"); }), HasSubstr("/nonexistent/trace.csv: not a trace file"));
  // A device or a directory would be read forever or as nothing.
  EXPECT_THAT(error_of([] { read_trace("/dev/zero"); }), HasSubstr("/dev/zero: not a trace file"));
  const std::string dir = std::filesystem::temp_directory_path().string();
  EXPECT_THAT(error_of([&] { read_trace(dir); }), HasSubstr(dir + ": not a trace file"));
}

TEST(Replay, WindowRebasesAndScalingStretchesTime) {
  std::vector<Request> r(10);
  for (int i = 0; i < 10; ++i) r[size_t(i)] = {i, double(i), 100, 10};
  const std::vector<Request> w = window(r, 3, 4);  // arrivals 3, 4, 5, 6
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w.front().id, 3);
  EXPECT_DOUBLE_EQ(w.front().arrival, 0.0);
  EXPECT_DOUBLE_EQ(w.back().arrival, 3.0);
  EXPECT_DOUBLE_EQ(scale_time(r, 2)[9].arrival, 18.0);
  EXPECT_DOUBLE_EQ(scale_rate(r, 4)[8].arrival, 2.0);
  EXPECT_THROW(scale_rate(r, 0), std::runtime_error);
  EXPECT_THROW(window(r, -1, 4), std::runtime_error);
}

// Poisson arrivals: the mean gap is 1 / rate and the gaps' coefficient of variation is 1;
// gamma arrivals keep the mean and take the asked-for cv. Over 40,000 gaps the sample moments
// are within a few standard errors (mean: cv / sqrt(n) relative, about 0.5% at cv 1).
TEST(Synthetic, ArrivalsHaveTheAskedRateAndBurstiness) {
  for (const auto& [arrivals, cv] : {std::pair{Synthetic::Arrivals::Poisson, 1.0},
                                     std::pair{Synthetic::Arrivals::Gamma, 3.0},
                                     std::pair{Synthetic::Arrivals::Gamma, 0.5}}) {
    Synthetic s;
    s.arrivals = arrivals, s.cv = cv, s.rate = 5, s.count = 40001, s.seed = 11;
    s.prompt.value = 128, s.output.value = 16;
    const std::vector<Request> r = synthesize(s);
    ASSERT_EQ(r.size(), 40001u);
    std::vector<double> gaps;
    for (size_t i = 1; i < r.size(); ++i) gaps.push_back(r[i].arrival - r[i - 1].arrival);
    const double n = double(gaps.size()), mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / n;
    double var = 0;
    for (double g : gaps) var += (g - mean) * (g - mean);
    const double sample_cv = std::sqrt(var / (n - 1)) / mean;
    EXPECT_NEAR(mean, 0.2, 0.2 * 4 * cv / std::sqrt(n)) << cv;
    EXPECT_NEAR(sample_cv, cv, 0.06 * cv) << cv;
  }
}

TEST(Synthetic, SeededAndDeterministicWithLengthsFromTheirDistribution) {
  Synthetic s = parse_synthetic("rate=2,prompt=uniform:100:200,output=lognormal:50:0.5:1:400,count=2000,seed=7");
  const std::vector<Request> a = synthesize(s), b = synthesize(s);
  ASSERT_EQ(a.size(), 2000u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival, b[i].arrival);
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
    EXPECT_EQ(a[i].output_tokens, b[i].output_tokens);
    EXPECT_GE(a[i].prompt_tokens, 100);
    EXPECT_LE(a[i].prompt_tokens, 200);
    EXPECT_GE(a[i].output_tokens, 1);
    EXPECT_LE(a[i].output_tokens, 400);
  }
  std::vector<int64_t> out;
  for (const Request& r : a) out.push_back(r.output_tokens);
  std::nth_element(out.begin(), out.begin() + 1000, out.end());
  EXPECT_NEAR(double(out[1000]), 50.0, 3.0);  // the median of the log-normal
  s.seed = 8;
  EXPECT_NE(synthesize(s)[1].arrival, a[1].arrival);
  // A duration instead of a count: every arrival within it.
  const std::vector<Request> d = synthesize(parse_synthetic("rate=10,prompt=8,output=8,duration=30"));
  EXPECT_NEAR(double(d.size()), 300.0, 4 * std::sqrt(300.0));
  EXPECT_LT(d.back().arrival, 30.0);
}

TEST(Synthetic, ResamplesATracesLengths) {
  std::vector<Request> trace = {{0, 0, 7, 3}, {1, 1, 11, 5}};
  const std::vector<Request> r = synthesize(parse_synthetic("rate=1,prompt=trace,output=trace,count=200", trace));
  for (const Request& x : r) {
    EXPECT_TRUE(x.prompt_tokens == 7 || x.prompt_tokens == 11);
    EXPECT_TRUE(x.output_tokens == 3 || x.output_tokens == 5);
  }
}

TEST(Synthetic, BadSpecsNameTheKey) {
  auto message = [](const std::string& spec) { return error_of([&] { parse_synthetic(spec); }); };
  EXPECT_THAT(message("prompt=8,output=8,count=1"), HasSubstr("--synthetic rate: missing"));
  EXPECT_THAT(message("rate=-1,prompt=8,output=8,count=1"), HasSubstr("--synthetic rate: '-1' is not a number above 0"));
  EXPECT_THAT(message("rate=1,prompt=uniform:9:3,output=8,count=1"), HasSubstr("--synthetic prompt: uniform:LO:HI needs LO <= HI"));
  EXPECT_THAT(message("rate=1,prompt=8,output=zipf:2,count=1"), HasSubstr("--synthetic output: 'zipf:2' is not N"));
  EXPECT_THAT(message("rate=1,prompt=trace,output=8,count=1"), HasSubstr("--synthetic prompt: 'trace' resamples"));
  EXPECT_THAT(message("rate=1,prompt=8,output=8"), HasSubstr("--synthetic count: missing"));
  EXPECT_THAT(message("rate=1,prompt=8,output=8,count=1,speed=2"), HasSubstr("--synthetic speed: unknown key"));
  EXPECT_THAT(message("rate=1,prompt=8,output=8,count=1,arrivals=weibull"), HasSubstr("--synthetic arrivals: 'weibull'"));
  EXPECT_THAT(message("rate=1,prompt=0,output=8,count=1"), HasSubstr("--synthetic prompt: '0' is not a whole number of tokens"));
  // Traffic too large to hold: an error, not an hour of generating.
  EXPECT_THAT(error_of([] { synthesize(parse_synthetic("rate=1e9,prompt=8,output=8,duration=1e9")); }),
              HasSubstr("synthetic traffic of 1e+18 requests: at most 1e+07"));
}

// The real traces (read where they are; not copied): their sizes and spans.
TEST(Trace, TheAzureTracesRead) {
  const std::filesystem::path dir = std::filesystem::path(TESSERA_SOURCE_DIR) / "../shared/data/azure-llm-2023";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is not on this machine";
  const std::vector<Request> conv = read_trace((dir / "AzureLLMInferenceTrace_conv.csv").string());
  const std::vector<Request> code = read_trace((dir / "AzureLLMInferenceTrace_code.csv").string());
  EXPECT_EQ(conv.size(), 19366u);
  EXPECT_EQ(code.size(), 8819u);
  EXPECT_NEAR(conv.back().arrival, 3501.721937, 1e-6);  // 18:15:46.6805900 to 19:14:08.4025270
  EXPECT_NEAR(code.back().arrival, 3435.948056, 1e-6);  // 18:17:03.9799600 to 19:14:19.9280160
}

}  // namespace
}  // namespace tessera::workloads
