// A scratch directory for tests that read files; removed with its files.
#pragma once

#include <doctest/doctest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

namespace trellis::kube::testing {

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/trellis-kube-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    for (const auto& f : files_) ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

  // Writes atomically (a new inode, as the kubelet's symlink swap gives).
  std::string write(const std::string& name, const std::string& content) {
    std::string target = file(name);
    std::string temp = target + ".tmp";
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      out << content;
      REQUIRE(out.good());
    }
    REQUIRE(::rename(temp.c_str(), target.c_str()) == 0);
    files_.insert(target);
    return target;
  }
  void remove(const std::string& name) { ::unlink(file(name).c_str()); }

 private:
  std::string path_;
  std::set<std::string> files_;
};

}  // namespace trellis::kube::testing
