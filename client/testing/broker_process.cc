#include "client/testing/broker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "common/assert.h"

namespace sluice::client::testing {

std::string sluiced_path() {
  if (const char* env = std::getenv("SLUICED")) return env;
#ifdef SLUICED_PATH
  return SLUICED_PATH;
#else
  return "sluiced";
#endif
}

BrokerProcess::BrokerProcess(std::string sluiced, std::vector<std::string> extra_args)
    : sluiced_(std::move(sluiced)), extra_(std::move(extra_args)) {
  char tmpl[] = "/tmp/sluice-client-test-XXXXXX";
  SLUICE_ASSERT(mkdtemp(tmpl) != nullptr);
  root_ = tmpl;
  data_dir_ = root_ + "/data";
  launch("127.0.0.1:0");
}

BrokerProcess::~BrokerProcess() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

void BrokerProcess::launch(const std::string& listen) {
  log_path_ = root_ + "/sluiced-" + std::to_string(launches_++) + ".log";
  // The admin API on any free port: test brokers never hold the default 9644.
  std::vector<std::string> args = {sluiced_, "--data-dir", data_dir_, "--listen",       listen,
                                   "--shards", "2",      "--admin.listen", "127.0.0.1:0"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  pid_t pid = fork();
  SLUICE_ASSERT(pid >= 0);
  if (pid == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  const std::regex serving("serving Kafka clients on [0-9.]+:([0-9]+)");
  for (int i = 0; i < 400; ++i) {  // up to 20 s (the checked build starts slowly)
    std::ifstream log(log_path_);
    std::stringstream text;
    text << log.rdbuf();
    std::smatch m;
    const std::string s = text.str();
    if (std::regex_search(s, m, serving)) {
      port_ = std::stoi(m[1]);
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      SLUICE_ASSERT(false && "sluiced exited during start-up; see its log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  SLUICE_ASSERT(false && "sluiced did not start within 20 s");
}

void BrokerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void BrokerProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void BrokerProcess::restart() {
  SLUICE_ASSERT(pid_ <= 0);
  const int port = port_;
  for (int attempt = 0;; ++attempt) {
    launch("127.0.0.1:" + std::to_string(port));
    if (port_ == port) return;
    SLUICE_ASSERT(attempt < 3);
  }
}

}  // namespace sluice::client::testing
