// Sends each line of stdin as a record to a topic and prints where it landed.
//   producer_example [brokers] topic < lines
#include <iostream>
#include <string>

#include "producer/producer.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::cout << "Usage: producer_example [brokers] topic < lines\n";
    return argc < 2 ? 2 : 0;
  }
  sluice::ProducerConfig config;
  std::string topic = argv[argc - 1];
  if (argc > 2) config.bootstrap_servers = argv[1];
  config.compression = "zstd";
  // The library's log lines (a connection lost and reopened, a retry), not on stderr.
  config.log_cb = [](sluice::LogLevel level, const std::string& message) {
    std::cerr << "producer " << sluice::log_level_name(level) << ": " << message << "\n";
  };
  auto producer = sluice::Producer::open(config);  // Result<Producer>: producer->send(...)
  if (!producer) {
    std::cerr << "error: " << producer.error().message << "\n";
    return 1;
  }
  int failures = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    sluice::Status s = producer->send({.topic = topic, .value = line},
                                      [&failures](const sluice::RecordMetadata& md) {
                                        if (md.ok()) {
                                          std::cout << md.partition << "@" << md.offset << "\n";
                                        } else {
                                          std::cerr << "error: " << md.error.message << "\n";
                                          ++failures;
                                        }
                                      });
    if (!s) {
      std::cerr << "error: " << s.error().message << "\n";
      return 1;
    }
  }
  if (auto s = producer->flush(); !s) {
    std::cerr << "error: " << s.error().message << "\n";
    return 1;
  }
  producer->close();
  return failures == 0 ? 0 : 1;
}
