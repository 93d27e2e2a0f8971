// UserMessage: the embedder's payload of a user message — plain bytes owned
// by the UserMessageEvent that carries them.
//
// Mojo's UserMessage is a polymorphic embedder object serialised lazily; ours
// is bytes from the start, so every hop can copy them onto the wire and
// nothing of the embedder runs under a ports lock. Payloads up to
// kInlineCapacity bytes live inside the object (so a small message costs the
// event's one allocation and nothing more); larger ones take one heap block.
//
// A value type; not thread-safe for concurrent mutation.
#ifndef SHMPORTS_CORE_PORTS_USER_MESSAGE_H_
#define SHMPORTS_CORE_PORTS_USER_MESSAGE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace shmports::ports {

class UserMessage {
 public:
  static constexpr size_t kInlineCapacity = 128;

  UserMessage() = default;
  explicit UserMessage(std::span<const uint8_t> bytes) { Assign(bytes); }
  UserMessage(const UserMessage& other) { Assign(other.bytes()); }
  UserMessage& operator=(const UserMessage& other) {
    if (this != &other)
      Assign(other.bytes());
    return *this;
  }
  ~UserMessage() = default;

  // Replaces the payload with a copy of `bytes`.
  void Assign(std::span<const uint8_t> bytes) {
    uint8_t* dest = Resize(bytes.size());
    if (!bytes.empty())
      std::memcpy(dest, bytes.data(), bytes.size());
  }
  void Assign(std::string_view text) {
    Assign(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }

  // Sets the size to `size` (contents unspecified) and returns the storage,
  // for callers that fill the payload in place (the decoder).
  uint8_t* Resize(size_t size) {
    if (size > kInlineCapacity && size > heap_capacity_) {
      heap_ = std::make_unique<uint8_t[]>(size);
      heap_capacity_ = size;
    }
    size_ = size;
    return data();
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint8_t* data() { return size_ > kInlineCapacity ? heap_.get() : inline_; }
  const uint8_t* data() const {
    return size_ > kInlineCapacity ? heap_.get() : inline_;
  }
  std::span<const uint8_t> bytes() const { return {data(), size_}; }
  std::string_view AsStringView() const {
    return {reinterpret_cast<const char*>(data()), size_};
  }

 private:
  size_t size_ = 0;
  size_t heap_capacity_ = 0;
  std::unique_ptr<uint8_t[]> heap_;
  uint8_t inline_[kInlineCapacity];
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_USER_MESSAGE_H_
