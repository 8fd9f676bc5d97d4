// Tests only: runs a real sluiced in a child process on a free loopback port with a fresh
// data directory, and can SIGKILL and restart it on the same port and data.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sluice::client::testing {

class BrokerProcess {
 public:
  // `sluiced` is the binary (tests get it from CMake as SLUICED_PATH).
  explicit BrokerProcess(std::string sluiced, std::vector<std::string> extra_args = {});
  ~BrokerProcess();  // SIGTERM, wait, remove the data directory
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& data_dir() const { return data_dir_; }

  void kill9();    // SIGKILL and reap
  void stop();     // SIGTERM and reap
  void restart();  // start again on the same port and data directory

 private:
  void launch(const std::string& listen);

  std::string sluiced_;
  std::vector<std::string> extra_;
  std::string root_;
  std::string data_dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  int launches_ = 0;
};

// SLUICED_PATH as compiled in, or $SLUICED.
std::string sluiced_path();

}  // namespace sluice::client::testing
