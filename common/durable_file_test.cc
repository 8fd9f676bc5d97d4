#include "common/durable_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace sluice {
namespace {

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/sluice-durable-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

TEST(DurableFile, SeveralFilesReplacedWithOneDirectorySync) {
  Dir d;
  ASSERT_TRUE(write_file_durably(d.path + "/b", "old b"));
  ASSERT_TRUE(write_files_durably(d.path, {{"a", "new a"}, {"b", "new b"}, {"c", ""}}));
  EXPECT_EQ(*read_file(d.path + "/a"), "new a");
  EXPECT_EQ(*read_file(d.path + "/b"), "new b");
  EXPECT_EQ(*read_file(d.path + "/c"), "");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(d.path)) {
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 3u);
}

TEST(DurableFile, AMissingDirectoryIsAnErrorNamingTheFile) {
  Dir d;
  auto s = write_files_durably(d.path + "/missing", {{"a", "x"}});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("missing/a.tmp"), std::string::npos) << s.error().message;
  EXPECT_FALSE(read_file(d.path + "/missing/a"));
}

}  // namespace
}  // namespace sluice
