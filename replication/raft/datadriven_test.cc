// Datadriven Raft scenarios: replication/testdata/*.txt hold a script of commands, each
// followed by `----` and the expected output (etcd's datadriven style). SLUICE_REWRITE=1
// rewrites the expected output from the actual one; read the diff before committing.
//
// Commands (node ids are numbers; messages wait in a queue until delivered):
//   cluster n=3 [pre-vote=0] [check-quorum=0] [max-msg-bytes=N] [max-inflight=N]
//   add-node ID                  a new, empty node (not yet a member)
//   campaign ID | tick ID [N] | tick-election ID... (in lockstep) | tick-heartbeat ID
//   propose ID DATA | propose-conf ID add-learner|promote|remove X | transfer ID TO
//   deliver [ID] | stabilize | drop ID    one round / until quiet / discard queued to-from ID
//   partition 1 2 | 3 | cut FROM TO | isolate ID | heal
//   crash ID | restart ID | compact ID
//   status | log ID
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "replication/sim/world.h"

namespace sluice::raft {
namespace {

namespace fs = std::filesystem;

fs::path testdata_dir() {
  if (const char* src = std::getenv("SLUICE_SOURCE_DIR")) {
    return fs::path(src) / "replication" / "testdata";
  }
  return fs::path(__FILE__).parent_path().parent_path() / "testdata";
}

struct Block {
  std::vector<std::string> comments;
  std::string command;
  std::string expected;
};

std::vector<Block> parse(std::istream& in) {
  std::vector<Block> blocks;
  Block cur;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() && cur.command.empty()) continue;
    if (line.starts_with("#")) {
      cur.comments.push_back(line);
      continue;
    }
    cur.command = line;
    std::getline(in, line);
    SLUICE_ASSERT(line == "----");
    while (std::getline(in, line) && !line.empty()) cur.expected += line + "\n";
    blocks.push_back(std::move(cur));
    cur = Block{};
  }
  return blocks;
}

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

NodeId node_id(const std::string& s) { return NodeId{std::stoi(s)}; }

class Interpreter {
 public:
  std::string run(const std::string& command) {
    const auto args = split(command);
    SLUICE_ASSERT(!args.empty());
    out_.str("");
    exec(args);
    std::string s = out_.str();
    if (world_ && !world_->checker().ok())
      s += "SAFETY VIOLATION: " + world_->checker().failure() + "\n";
    return s.empty() ? "ok\n" : s;
  }

 private:
  void exec(const std::vector<std::string>& a) {
    const std::string& cmd = a[0];
    if (cmd == "cluster") return cluster(a);
    SLUICE_ASSERT(world_ != nullptr);
    if (cmd == "add-node") return world_->add_node(node_id(a[1]), RestoredState{});
    if (cmd == "campaign") {
      world_->node(node_id(a[1]))->campaign();
      world_->process_ready(world_->replica(node_id(a[1])));
      return;
    }
    if (cmd == "tick") {
      const int n = a.size() > 2 ? std::stoi(a[2]) : 1;
      for (int i = 0; i < n; ++i) world_->tick(node_id(a[1]));
      return;
    }
    if (cmd == "tick-election") {
      std::vector<NodeId> ids;
      for (size_t i = 1; i < a.size(); ++i) ids.push_back(node_id(a[i]));
      return tick_election(ids);
    }
    if (cmd == "tick-heartbeat") {
      for (uint32_t i = 0; i < cfg_.heartbeat_ticks; ++i) world_->tick(node_id(a[1]));
      return;
    }
    if (cmd == "propose")
      return print_index(world_->propose(node_id(a[1]), Payload::copy_of(a[2])));
    if (cmd == "propose-conf") return propose_conf(a);
    if (cmd == "transfer") {
      const NodeId id = node_id(a[1]);
      auto r = world_->node(id)->transfer_leadership(node_id(a[2]));
      if (!r) out_ << "error: " << to_string(r.error()) << "\n";
      world_->process_ready(world_->replica(id));
      return;
    }
    if (cmd == "deliver" || cmd == "stabilize") return deliver(a);
    if (cmd == "drop") return world_->drop_queued(node_id(a[1]));
    if (cmd == "partition") return partition(a);
    if (cmd == "cut") return world_->cut(node_id(a[1]), node_id(a[2]));
    if (cmd == "isolate") return world_->isolate(node_id(a[1]));
    if (cmd == "heal") return world_->heal();
    if (cmd == "crash") return world_->crash(node_id(a[1]));
    if (cmd == "restart") return world_->restart(node_id(a[1]));
    if (cmd == "compact") {
      const Snapshot s = world_->compact(node_id(a[1]));
      out_ << "snapshot " << *s.term << "/" << *s.index << " " << to_string(s.conf) << "\n";
      return;
    }
    if (cmd == "status") return status();
    if (cmd == "log") return log(node_id(a[1]));
    FAIL() << "unknown command: " << cmd;
  }

  void cluster(const std::vector<std::string>& a) {
    int n = 3;
    cfg_ = Config{};
    cfg_.election_ticks = 10;
    cfg_.heartbeat_ticks = 1;
    for (size_t i = 1; i < a.size(); ++i) {
      const auto eq = a[i].find('=');
      const std::string key = a[i].substr(0, eq);
      const uint64_t v = std::stoull(a[i].substr(eq + 1));
      if (key == "n") n = static_cast<int>(v);
      if (key == "pre-vote") cfg_.pre_vote = v != 0;
      if (key == "check-quorum") cfg_.check_quorum = v != 0;
      if (key == "max-msg-bytes") cfg_.max_msg_bytes = v;
      if (key == "max-inflight") cfg_.max_inflight_msgs = static_cast<uint32_t>(v);
    }
    world_ = std::make_unique<sim::World>(
        sim::WorldOptions{.seed = 1, .manual = true, .node_config = cfg_});
    world_->bootstrap(n);
  }

  // Ticks the nodes in lockstep until one of them changes role or term (at most two
  // election timeouts: enough for any randomized timeout and for a check-quorum step-down).
  void tick_election(const std::vector<NodeId>& ids) {
    std::vector<std::pair<Role, Term>> before;
    for (NodeId id : ids) before.emplace_back(world_->node(id)->role(), world_->node(id)->term());
    auto changed = [&](size_t i) {
      const Node* n = world_->node(ids[i]);
      return n->role() != before[i].first || n->term() != before[i].second;
    };
    bool any = false;
    for (uint32_t t = 0; t < 2 * cfg_.election_ticks && !any; ++t) {
      for (NodeId id : ids) world_->tick(id);
      for (size_t i = 0; i < ids.size(); ++i) any = any || changed(i);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!changed(i)) continue;
      const Node* n = world_->node(ids[i]);
      out_ << *ids[i] << " is " << to_string(n->role()) << " at term " << *n->term() << "\n";
    }
  }

  void print_index(const Result<LogIndex, Errc>& r) {
    if (r) {
      out_ << "index " << **r << "\n";
    } else {
      out_ << "error: " << to_string(r.error()) << "\n";
    }
  }

  void propose_conf(const std::vector<std::string>& a) {
    const NodeId id = node_id(a[1]);
    const NodeId who = node_id(a[3]);
    ConfState next = world_->node(id)->status().conf;
    std::erase(next.voters, who);
    std::erase(next.learners, who);
    if (a[2] == "add-learner") next.learners.push_back(who);
    if (a[2] == "promote") next.voters.push_back(who);
    std::sort(next.voters.begin(), next.voters.end());
    std::sort(next.learners.begin(), next.learners.end());
    print_index(world_->node(id)->propose_conf(next));
    world_->process_ready(world_->replica(id));
  }

  void deliver(const std::vector<std::string>& a) {
    std::vector<std::string> trace;
    if (a[0] == "stabilize") {
      world_->stabilize(&trace);
    } else {
      world_->deliver(&trace, a.size() > 1 ? node_id(a[1]) : kNoNode);
    }
    for (const auto& t : trace) out_ << t << "\n";
  }

  void partition(const std::vector<std::string>& a) {
    std::vector<std::vector<NodeId>> groups(1);
    for (size_t i = 1; i < a.size(); ++i) {
      if (a[i] == "|") {
        groups.emplace_back();
      } else {
        groups.back().push_back(node_id(a[i]));
      }
    }
    world_->partition(groups);
  }

  void status() {
    for (const auto& [id, r] : world_->replicas()) {
      if (!r.up()) {
        out_ << *id << ": down\n";
        continue;
      }
      const NodeStatus s = r.node->status();
      out_ << *id << ": " << to_string(s.role) << " term=" << *s.term
           << " lead=" << (s.leader == kNoNode ? std::string("none") : std::to_string(*s.leader))
           << " commit=" << *s.commit << " last=" << *s.last_index;
      if (*s.first_index > 1) out_ << " first=" << *s.first_index;
      out_ << " " << to_string(s.conf) << "\n";
    }
  }

  void log(NodeId id) {
    const auto& log = world_->node(id)->log();
    if (!log.snapshot().empty()) {
      out_ << "snapshot " << *log.snapshot().term << "/" << *log.snapshot().index << "\n";
    }
    for (const Entry& e : log.entries()) {
      out_ << *e.term << "/" << *e.index << " ";
      switch (e.type) {
        case EntryType::kNormal:
          out_ << e.data.text();
          break;
        case EntryType::kNoop:
          out_ << "(noop)";
          break;
        case EntryType::kConfig:
          out_ << "(config " << to_string(*decode_conf_state(e.data.bytes())) << ")";
          break;
        case EntryType::kControl:
          out_ << "(control " << e.data.size() << " bytes)";
          break;
      }
      out_ << "\n";
    }
  }

  std::unique_ptr<sim::World> world_;
  Config cfg_;
  std::ostringstream out_;
};

class RaftScenario : public testing::TestWithParam<std::string> {};

TEST_P(RaftScenario, MatchesExpectedOutput) {
  const fs::path path = testdata_dir() / (GetParam() + ".txt");
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot open " << path;
  const std::vector<Block> blocks = parse(in);
  ASSERT_FALSE(blocks.empty());
  Interpreter interp;
  std::ostringstream rewritten;
  const bool rewrite = std::getenv("SLUICE_REWRITE") != nullptr;
  for (const Block& b : blocks) {
    const std::string actual = interp.run(b.command);
    if (!rewrite) {
      EXPECT_EQ(actual, b.expected) << path.filename() << ": " << b.command;
    }
    EXPECT_EQ(actual.find("SAFETY VIOLATION"), std::string::npos) << actual;
    for (const auto& c : b.comments) rewritten << c << "\n";
    rewritten << b.command << "\n----\n" << actual << "\n";
  }
  if (rewrite) {
    std::string text = rewritten.str();
    text.pop_back();  // no blank line at the end of the file
    std::ofstream(path) << text;
  }
}

// Every file in testdata/ must be listed here (checked below), so ctest gets one entry each.
const std::vector<std::string> kScenarios = {
    "figure8",
    "leader_stale_log",
    "split_vote",
    "partitioned_leader",
    "membership_partition",
    "snapshot_install",
    "pre_vote_check_quorum",
    "leadership_transfer",
    "flow_control",
    "leader_removal",
};

INSTANTIATE_TEST_SUITE_P(Files, RaftScenario, testing::ValuesIn(kScenarios),
                         [](const auto& info) { return info.param; });

TEST(RaftScenarioFiles, EveryFileIsListed) {
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(testdata_dir())) {
    if (e.path().extension() != ".txt") continue;
    ++files;
    const std::string stem = e.path().stem().string();
    EXPECT_NE(std::find(std::begin(kScenarios), std::end(kScenarios), stem), std::end(kScenarios))
        << stem;
  }
  EXPECT_EQ(files, std::size(kScenarios));
}

}  // namespace
}  // namespace sluice::raft
