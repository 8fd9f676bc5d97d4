// A response ready to be written: the encoded frame (size prefix first; `splices` name file
// ranges the connection sends with sendfile(), so Fetch copies no record bytes through user
// space) and what keeps those files open until the frame is written.
#pragma once

#include <memory>
#include <vector>

#include "protocol/codec.h"

namespace sluice::broker {

struct OutFrame {
  kafka::EncodedFrame frame;
  std::vector<std::shared_ptr<const void>> keepalive;
};

}  // namespace sluice::broker
