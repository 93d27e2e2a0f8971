// Replays fuzz inputs without libFuzzer: every file named on the command
// line, or every file in a named directory, goes once through
// LLVMFuzzerTestOneInput. Builds that are not clang's (gcc, sanitizers) run
// the seed corpus and past crash reproducers this way in suite `fuzz`.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool RunFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return false;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                         bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    struct stat st;
    if (stat(arg.c_str(), &st) != 0) {
      std::fprintf(stderr, "no such input: %s\n", arg.c_str());
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (!RunFile(arg))
        return 1;
      ++inputs;
      continue;
    }
    DIR* dir = opendir(arg.c_str());
    if (dir == nullptr)
      return 1;
    while (struct dirent* e = readdir(dir)) {
      std::string name = e->d_name;
      if (name == "." || name == "..")
        continue;
      if (!RunFile(arg + "/" + name)) {
        closedir(dir);
        return 1;
      }
      ++inputs;
    }
    closedir(dir);
  }
  // An empty corpus would make this test pass without testing anything.
  if (inputs == 0) {
    std::fprintf(stderr, "no fuzz inputs found\n");
    return 1;
  }
  std::printf("%zu inputs replayed without a crash\n", inputs);
  return 0;
}
