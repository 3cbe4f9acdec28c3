// weir-kafka-mock: a Kafka cluster for tests, librdkafka's mock cluster (rdkafka_mock.h)
// kept alive in this small process, since the cluster lives in the process that made it.
//
//   weir-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
//
// Prints the bootstrap servers ("127.0.0.1:PORT,...") as its first line, then takes one
// command a line on stdin, answering "ok" or "error: ..." to each:
//   topic NAME PARTITIONS   create a topic (the mock has no CreateTopics API)
//   down                    every broker down (connections refused, none answers)
//   up                      every broker up again
//   refuse-commits N        the next N offset commits answered "rebalance in progress", as
//                           the mock answers them while its group rebalances
//   quit                    (or end of input) exit
// Brokers down do not move leadership (rdkafka_mock.h): clients wait for them, which is the
// outage a test wants.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool create_topic(rd_kafka_mock_cluster_t* cluster, const std::string& name, int partitions, std::string& why) {
  if (name.empty() || partitions < 1) {
    why = "a topic needs a name and at least one partition";
    return false;
  }
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, name.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    why = rd_kafka_err2str(err);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--brokers" && i + 1 < argc) {
      brokers = std::atoi(argv[++i]);
    } else if (arg == "--topic" && i + 1 < argc) {
      std::string spec = argv[++i];
      auto colon = spec.rfind(':');
      if (colon == std::string::npos) {
        std::cerr << "weir-kafka-mock: --topic takes NAME:PARTITIONS\n";
        return 2;
      }
      topics.emplace_back(spec.substr(0, colon), std::atoi(spec.c_str() + colon + 1));
    } else {
      std::cerr << "usage: weir-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n";
      return 2;
    }
  }
  if (brokers < 1) brokers = 1;

  // The cluster belongs to a client instance; this one does nothing else.
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  rd_kafka_t* owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  if (owner == nullptr) {
    std::cerr << "weir-kafka-mock: " << why << "\n";
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner, brokers);
  if (cluster == nullptr) {
    std::cerr << "weir-kafka-mock: cannot make the mock cluster\n";
    return 1;
  }
  for (const auto& [name, partitions] : topics) {
    std::string error;
    if (!create_topic(cluster, name, partitions, error)) {
      std::cerr << "weir-kafka-mock: topic " << name << ": " << error << "\n";
      return 1;
    }
  }
  std::cout << rd_kafka_mock_cluster_bootstraps(cluster) << std::endl;

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string command;
    words >> command;
    std::string error;
    if (command.empty()) continue;
    if (command == "quit") break;
    if (command == "topic") {
      std::string name;
      int partitions = 0;
      words >> name >> partitions;
      if (!create_topic(cluster, name, partitions, error)) {
        std::cout << "error: " << error << std::endl;
        continue;
      }
    } else if (command == "down" || command == "up") {
      for (int id = 1; id <= brokers; ++id) {
        rd_kafka_resp_err_t err = command == "down" ? rd_kafka_mock_broker_set_down(cluster, id)
                                                    : rd_kafka_mock_broker_set_up(cluster, id);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_err2str(err);
      }
      if (!error.empty()) {
        std::cout << "error: " << error << std::endl;
        continue;
      }
    } else if (command == "refuse-commits") {
      std::size_t count = 0;
      words >> count;
      constexpr std::int16_t kOffsetCommit = 8;  // the Kafka protocol's ApiKey
      std::vector<rd_kafka_resp_err_t> errors(count, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS);
      rd_kafka_mock_push_request_errors_array(cluster, kOffsetCommit, errors.size(), errors.data());
    } else {
      std::cout << "error: unknown command '" << command << "'" << std::endl;
      continue;
    }
    std::cout << "ok" << std::endl;
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(owner);
  return 0;
}
