// sluice::ConsumerGroupMetadata: a group member as the consumer sees it now, handed to the
// producer's send_offsets_to_transaction() so that the group coordinator can refuse the
// commit of a member that is no longer in the group (KIP-447: a zombie's offsets must not
// commit). Consumer::group_metadata() gives it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sluice {

struct ConsumerGroupMetadata {
  std::string group_id;
  int32_t generation_id = -1;  // -1: not checked (a group id alone)
  std::string member_id;       // empty: not checked
  std::optional<std::string> group_instance_id;
};

}  // namespace sluice
