// libFuzzer target: the SASL message parsers and a whole SCRAM exchange (broker/sasl.h).
// Input: a selector byte, then the message(s); for the exchange, client-first and
// client-final separated by the first NUL. Beyond "no crash, no sanitizer report", it checks
// that a failed step always says why, and that an exchange never succeeds with a proof that
// was not derived from the one credential's password.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "broker/sasl.h"
#include "common/assert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::broker::sasl;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto m = parse_plain(input);
      if (!m) SLUICE_ASSERT(!m.error().message.empty());
      break;
    }
    case 1: {
      auto m = parse_client_first(input);
      if (!m) SLUICE_ASSERT(!m.error().message.empty());
      break;
    }
    case 2: {
      auto m = parse_client_final(input);
      if (!m) SLUICE_ASSERT(!m.error().message.empty());
      break;
    }
    default: {
      // One user "u" whose password is "p" (low iterations: the fuzzer wants speed; the
      // credential is made once).
      static const ScramCredential cred = make_credential(ScramHash::kSha256, "p", 1, "salt");
      const size_t nul = input.find('\0');
      ScramServer server(ScramHash::kSha256, "fixed");
      auto first = server.first(input.substr(0, nul), [](const std::string& user) {
        return user == "u" ? std::optional<ScramCredential>(cred) : std::nullopt;
      });
      if (!first) {
        SLUICE_ASSERT(!first.error().message.empty());
        break;
      }
      if (nul == std::string_view::npos) break;
      auto last = server.final(input.substr(nul + 1));
      if (!last) SLUICE_ASSERT(!last.error().message.empty());
      if (last) SLUICE_ASSERT(server.user() == "u");
      break;
    }
  }
  return 0;
}
