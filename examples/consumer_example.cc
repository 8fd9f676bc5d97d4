// Prints records of a topic as a member of a consumer group until no record came for 5 s.
//   consumer_example [brokers] group topic
#include <iostream>
#include <string>
#include <utility>

#include "consumer/consumer.h"

int main(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) == "--help") {
    std::cout << "Usage: consumer_example [brokers] group topic\n";
    return argc >= 2 && std::string(argv[1]) == "--help" ? 0 : 2;
  }
  sluice::ConsumerConfig config;
  if (argc > 3) config.bootstrap_servers = argv[1];
  config.group_id = argv[argc - 2];
  config.auto_offset_reset = "earliest";
  auto opened = sluice::Consumer::open(config);  // Result<Consumer>
  if (!opened) {
    std::cerr << "error: " << opened.error().message << "\n";
    return 1;
  }
  sluice::Consumer consumer = std::move(*opened);  // a plain value from here on
  if (auto s = consumer.subscribe({argv[argc - 1]}); !s) {
    std::cerr << "error: " << s.error().message << "\n";
    return 1;
  }
  int idle_polls = 0;
  while (idle_polls < 10) {
    auto records = consumer.poll(std::chrono::milliseconds(500));
    if (!records) {
      std::cerr << "error: " << records.error().message << "\n";
      return 1;
    }
    idle_polls = records->empty() ? idle_polls + 1 : 0;
    for (const sluice::ConsumerRecord& r : *records) {
      std::cout << r.partition << "@" << r.offset << " " << r.key.value_or("") << " "
                << r.value.value_or("") << "\n";
    }
  }
  consumer.close();  // commits and leaves the group
  return 0;
}
