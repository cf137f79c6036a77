// Read-only memory mapping of a whole file. The mapping outlives the fd; it is released by unmap_file.
#pragma once
#include <cstddef>
#include <string>

namespace streamline {

struct MappedFile {
  void* data = nullptr;  // nullptr for an empty file
  size_t size = 0;
};

// On failure returns false and fills err with the system's reason.
bool map_file(const std::string& path, MappedFile* out, std::string* err);
void unmap_file(MappedFile* f);

}  // namespace streamline
