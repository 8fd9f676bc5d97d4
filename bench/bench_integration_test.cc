// Each bench mode against a real sluiced (started per test on a free loopback port with a
// temporary data directory), run through the sluice-bench program as a user would, checking
// that every produced record is consumed and that the --json result parses.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "bench/internal/json_probe.h"

namespace sluice::bench {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Broker {
 public:
  Broker() {
    char dir[] = "/tmp/sluice-bench-test-XXXXXX";
    if (::mkdtemp(dir) == nullptr) std::abort();
    dir_ = dir;
    log_ = dir_ + "/sluiced.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      const std::string data = dir_ + "/data";
      ::execl(SLUICED_PATH, "sluiced", "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const std::regex serving("serving Kafka clients on 127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 200 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = read_file(log_);
      if (std::regex_search(text, m, serving)) port_ = std::stoi(m[1]);
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~Broker() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string log() const { return read_file(log_); }

 private:
  std::string dir_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

struct BenchRun {
  int status = -1;
  std::string json;  // stdout
  std::string err;   // stderr
};

class BenchIntegration : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(broker_.port(), 0) << broker_.log(); }

  // Runs sluice-bench with `args`, or with `via_cli` `sluice -b BROKER bench` (whose -b is
  // the default bootstrap).
  BenchRun bench(const std::string& args, bool via_cli = false) {
    const std::string out = broker_.dir() + "/out.json";
    const std::string err = broker_.dir() + "/err.txt";
    const std::string broker = "127.0.0.1:" + std::to_string(broker_.port());
    const std::string program = via_cli ? std::string(SLUICE_CLI_PATH) + " -b " + broker + " bench"
                                        : std::string(SLUICE_BENCH_PATH);
    const std::string cmd = program + " " + args + " --json" +
                            (via_cli ? "" : " --bootstrap " + broker) + " >" + out + " 2>" + err;
    BenchRun r;
    const int raw = std::system(cmd.c_str());
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.json = read_file(out);
    r.err = read_file(err);
    return r;
  }

  // A value from the JSON result at `path` (dot-separated), read by Python's json module;
  // the test fails when the JSON does not parse.
  std::string value(const BenchRun& run, const std::string& path) {
    bool ok = false;
    std::string v = detail::json_at(run.json, path, broker_.dir() + "/value.json", ok);
    EXPECT_TRUE(ok) << "JSON does not parse or lacks " << path << ":\n"
                    << run.json << "\nstderr:\n"
                    << run.err;
    return v;
  }
  int64_t number(const BenchRun& run, const std::string& path) {
    const std::string v = value(run, path);
    return v.empty() ? -1 : static_cast<int64_t>(std::stod(v));
  }

  Broker broker_;
};

TEST_F(BenchIntegration, ProduceThenConsumeReadsEveryRecord) {
  const BenchRun produced = bench(
      "produce --topic pc --partitions 3 --records 20000 --warmup 0 --record-size-min 100 "
      "--record-size-max 2000 --key-distribution random --keys 50 --producers 2 --linger-ms 2");
  ASSERT_EQ(produced.status, 0) << produced.err;
  EXPECT_EQ(value(produced, "mode"), "\"produce\"");
  EXPECT_EQ(number(produced, "produce.records"), 20000);
  EXPECT_EQ(number(produced, "produce.errors"), 0);
  EXPECT_EQ(number(produced, "produce.latency_us.count"), 20000);
  EXPECT_GT(number(produced, "produce.latency_us.max"), 0);
  const int64_t bytes = number(produced, "produce.bytes");
  EXPECT_GE(bytes, 20000 * 100);
  EXPECT_LE(bytes, 20000 * 2000);

  const BenchRun consumed = bench("consume --topic pc --warmup 0 --consumers 2 --duration 60");
  ASSERT_EQ(consumed.status, 0) << consumed.err;
  EXPECT_EQ(number(consumed, "consume.records"), 20000);
  EXPECT_EQ(number(consumed, "consume.bytes"), bytes);
  EXPECT_EQ(number(consumed, "config.partitions"), 3);
}

TEST_F(BenchIntegration, E2eAtFixedRateConsumesEveryRecordAndWritesAReport) {
  const std::string report = broker_.dir() + "/report.html";
  const BenchRun r = bench(
      "e2e --topic e2e --partitions 4 --producers 2 --consumers 2 --rate 4000 "
      "--duration 2 --warmup 1 --key-distribution sequential --keys 100 "
      "--acks all --report " +
      report);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(value(r, "complete"), "true");
  EXPECT_EQ(number(r, "out_of_order"), 0);
  const int64_t total = number(r, "produced_total");
  EXPECT_EQ(number(r, "consumed_total"), total);
  // 3 s at 4000/s; the schedule is fixed, so the count is exact up to the last record's slot.
  EXPECT_NEAR(total, 12000, 2);
  EXPECT_NEAR(number(r, "produce.records"), 8000, 2);
  EXPECT_GT(number(r, "consume.latency_us.p50"), 0);
  EXPECT_GE(number(r, "consume.latency_us.max"), number(r, "consume.latency_us.p99"));
  const std::string html = read_file(report);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(r.err.find("(warm-up)"), std::string::npos) << r.err;  // the progress lines
}

TEST_F(BenchIntegration, E2eFlatOutWithCompressionOnTheRawClientConsumesEveryRecord) {
  const BenchRun r = bench(
      "e2e --client raw --topic zstd --partitions 2 --duration 2 --warmup 0 "
      "--compression zstd --batch-size 65536 --record-size 300");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(value(r, "complete"), "true");
  EXPECT_EQ(number(r, "out_of_order"), 0);
  EXPECT_GT(number(r, "produced_total"), 0);
  EXPECT_EQ(number(r, "consumed_total"), number(r, "produced_total"));
  EXPECT_EQ(number(r, "consume.records"), number(r, "produce.records"));
}

TEST_F(BenchIntegration, SluiceCommandRunsBenchThroughTheLibraries) {
  const BenchRun r = bench(
      "e2e --topic cli --partitions 2 --duration 2 --warmup 0 --rate 2000 "
      "--compression lz4 --acks all",
      /*via_cli=*/true);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(value(r, "config.client"), "\"library\"");
  EXPECT_EQ(value(r, "complete"), "true");
  EXPECT_EQ(number(r, "out_of_order"), 0);
  EXPECT_NEAR(number(r, "produced_total"), 4000, 2);
  EXPECT_EQ(number(r, "consumed_total"), number(r, "produced_total"));

  const BenchRun consumed = bench("consume --topic cli --warmup 0 --duration 60", true);
  ASSERT_EQ(consumed.status, 0) << consumed.err;
  EXPECT_EQ(number(consumed, "consume.records"), number(r, "produced_total"));
}

TEST_F(BenchIntegration, BadSettingsAndAnUnreachableBrokerFail) {
  EXPECT_NE(bench("produce --record-size 8 --duration 1").status, 0);
  EXPECT_NE(bench("produce --acks 2 --duration 1").status, 0);
  const BenchRun r = bench("produce --duration 1 --bootstrap 127.0.0.1:1");  // the later flag wins
  EXPECT_NE(r.status, 0);
}

}  // namespace
}  // namespace sluice::bench
