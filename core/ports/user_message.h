// UserMessage: the embedder's payload of a user message — plain bytes owned
// by the UserMessageEvent that carries them.
//
// Mojo's UserMessage is a polymorphic embedder object serialised lazily; ours
// is bytes from the start, so every hop can copy them onto the wire and
// nothing of the embedder runs under a ports lock. Payloads up to
// kInlineCapacity bytes live inside the object (so a small message costs the
// event's one allocation and nothing more); larger ones take one heap block,
// a std::vector so that it can be handed on without a copy (Adopt from the
// decoder, TakeBytes into the user's PipeMessage).
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
#include <utility>
#include <vector>

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

  // Replaces the payload with a copy of `bytes`. Every byte is written once
  // (a larger payload's block is allocated without being zeroed first).
  void Assign(std::span<const uint8_t> bytes) {
    if (bytes.size() > kInlineCapacity) {
      heap_.assign(bytes.begin(), bytes.end());
    } else if (!bytes.empty()) {
      std::memcpy(inline_, bytes.data(), bytes.size());
    }
    size_ = bytes.size();
  }
  void Assign(std::string_view text) {
    Assign(std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }

  // Replaces the payload with `bytes`, taking its block when the payload is
  // larger than kInlineCapacity (no copy; the decoder hands over the buffer
  // a fragmented message was reassembled in).
  void Adopt(std::vector<uint8_t>&& bytes) {
    if (bytes.size() > kInlineCapacity) {
      heap_ = std::move(bytes);
      size_ = heap_.size();
    } else {
      Assign(std::span<const uint8_t>(bytes));
      bytes.clear();
    }
  }

  // Moves the payload out (leaving this message empty): a larger payload's
  // block is handed over without a copy, a small one is copied.
  std::vector<uint8_t> TakeBytes() {
    std::vector<uint8_t> out;
    if (size_ > kInlineCapacity)
      out = std::move(heap_);
    else
      out.assign(inline_, inline_ + size_);
    heap_.clear();
    size_ = 0;
    return out;
  }

  // Sets the size to `size` and returns the storage, for callers that fill
  // the payload in place. The contents are unspecified (a larger payload's
  // new bytes are zeroed: prefer Assign or Adopt when the bytes exist).
  uint8_t* Resize(size_t size) {
    if (size > kInlineCapacity)
      heap_.resize(size);
    size_ = size;
    return data();
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint8_t* data() { return size_ > kInlineCapacity ? heap_.data() : inline_; }
  const uint8_t* data() const {
    return size_ > kInlineCapacity ? heap_.data() : inline_;
  }
  std::span<const uint8_t> bytes() const { return {data(), size_}; }
  std::string_view AsStringView() const {
    return {reinterpret_cast<const char*>(data()), size_};
  }

 private:
  size_t size_ = 0;
  // The payload when size_ > kInlineCapacity (then heap_.size() == size_);
  // kept, with its block, while a small payload sits inline.
  std::vector<uint8_t> heap_;
  uint8_t inline_[kInlineCapacity];
};

}  // namespace shmports::ports

#endif  // SHMPORTS_CORE_PORTS_USER_MESSAGE_H_
