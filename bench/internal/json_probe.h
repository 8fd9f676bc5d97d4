// Tests only: reads a value out of JSON text with Python's json module, an independent
// parser, so a test also checks that the text parses.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

namespace sluice::bench::detail {

// The value at `path` (keys and list indexes separated by dots) as JSON text, e.g. "1000" or
// "\"e2e\"". `scratch` is a file it may overwrite. Sets `ok` false when the text does not
// parse or lacks the path (and returns "").
inline std::string json_at(const std::string& json, const std::string& path,
                           const std::string& scratch, bool& ok) {
  std::ofstream(scratch) << json;
  const std::string cmd =
      "python3 -c 'import json,sys\nv=json.load(open(sys.argv[1]))\n"
      "for k in sys.argv[2].split(\".\"): v=v[int(k) if isinstance(v,list) else k]\n"
      "print(json.dumps(v))' " +
      scratch + " " + path + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  ok = p != nullptr && ::pclose(p) == 0;
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return ok ? out : "";
}

}  // namespace sluice::bench::detail
