#include "streamline/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace streamline {

bool map_file(const std::string& path, MappedFile* out, std::string* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) { *err = std::strerror(errno); return false; }
  struct stat st;
  if (::fstat(fd, &st) != 0) { *err = std::strerror(errno); ::close(fd); return false; }
  if (!S_ISREG(st.st_mode)) { *err = "not a regular file"; ::close(fd); return false; }
  out->size = size_t(st.st_size);
  out->data = nullptr;
  if (out->size > 0) {
    void* p = ::mmap(nullptr, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { *err = std::strerror(errno); ::close(fd); return false; }
    out->data = p;
  }
  ::close(fd);
  return true;
}

void unmap_file(MappedFile* f) {
  if (f->data) ::munmap(f->data, f->size);
  f->data = nullptr;
  f->size = 0;
}

}  // namespace streamline
