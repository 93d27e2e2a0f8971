#include "channel/fragment.h"

#include <cstring>
#include <utility>

#include "core/base/str_format.h"

namespace shmports::channel {
namespace {

void StoreU64(uint8_t* out, uint64_t value) {
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t LoadU64(const uint8_t* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

}  // namespace

void WriteFragmentHeader(std::span<uint8_t> out, const FragmentHeader& header) {
  StoreU64(out.data(), header.total);
  StoreU64(out.data() + 8, header.offset);
}

Result<FragmentHeader> ReadFragmentHeader(std::span<const uint8_t> payload) {
  if (payload.size() <= kFragmentHeaderSize) {
    return ProtocolViolationError(
        StrFormat("fragment of %zu bytes: a fragment carries a %zu-byte "
                  "header and at least one data byte",
                  payload.size(), kFragmentHeaderSize));
  }
  FragmentHeader header;
  header.total = LoadU64(payload.data());
  header.offset = LoadU64(payload.data() + 8);
  return header;
}

std::vector<uint8_t> EncodeFragment(uint64_t total,
                                    uint64_t offset,
                                    std::span<const uint8_t> data) {
  std::vector<uint8_t> out(kFragmentHeaderSize + data.size());
  WriteFragmentHeader(out, FragmentHeader{total, offset});
  if (!data.empty())
    std::memcpy(out.data() + kFragmentHeaderSize, data.data(), data.size());
  return out;
}

std::vector<std::vector<uint8_t>> SplitIntoFragments(
    std::span<const uint8_t> message,
    uint32_t max_frame) {
  std::vector<std::vector<uint8_t>> out;
  const size_t chunk = FragmentDataCapacity(max_frame);
  if (chunk == 0)
    return out;
  for (size_t offset = 0; offset < message.size(); offset += chunk) {
    size_t n =
        message.size() - offset < chunk ? message.size() - offset : chunk;
    out.push_back(
        EncodeFragment(message.size(), offset, message.subspan(offset, n)));
  }
  return out;
}

FragmentAssembler::FragmentAssembler(uint64_t max_message_bytes, Mode mode)
    : max_message_bytes_(max_message_bytes), mode_(mode) {}

Result<bool> FragmentAssembler::Accept(std::span<const uint8_t> payload,
                                       uint16_t flags) {
  if (complete_) {
    return ProtocolViolationError(
        "fragment after a completed stream that was not taken");
  }
  if (flags != 0)
    return ProtocolViolationError(StrFormat("fragment flags %u, not 0", flags));
  SHMPORTS_ASSIGN_OR_RETURN(FragmentHeader header, ReadFragmentHeader(payload));
  const uint64_t length = payload.size() - kFragmentHeaderSize;
  if (!open_) {
    if (header.offset != 0) {
      return ProtocolViolationError(
          StrFormat("fragment stream starts at offset %llu, not 0",
                    static_cast<unsigned long long>(header.offset)));
    }
    if (header.total > max_message_bytes_) {
      return ProtocolViolationError(StrFormat(
          "fragment stream announces %llu bytes, beyond the largest message "
          "(%llu bytes)",
          static_cast<unsigned long long>(header.total),
          static_cast<unsigned long long>(max_message_bytes_)));
    }
    if (length > header.total) {
      return ProtocolViolationError(
          StrFormat("first fragment carries %llu bytes of a %llu-byte stream",
                    static_cast<unsigned long long>(length),
                    static_cast<unsigned long long>(header.total)));
    }
    // Charged up front: the limit above bounds what one peer can make us
    // hold, and a link carries one stream at a time.
    // Split mode: the first kPrefix bytes go to the head until they tell
    // where the user payload starts (usually within the first fragment).
    head_size_ = mode_ == Mode::kSplitUserPayload && header.total >= kPrefix
                     ? kPrefix
                     : 0;
    head_decided_ = head_size_ == 0;
    head_.clear();
    body_.clear();
    head_.reserve(head_size_);
    body_.reserve(header.total - head_size_);
    total_ = header.total;
    filled_ = 0;
    open_ = true;
  } else {
    if (header.offset == 0) {
      return ProtocolViolationError(StrFormat(
          "a new fragment stream before the old one finished (%llu of %llu "
          "bytes)",
          static_cast<unsigned long long>(filled_),
          static_cast<unsigned long long>(total_)));
    }
    if (header.total != total_) {
      return ProtocolViolationError(StrFormat(
          "fragment announces a total of %llu bytes inside a stream of %llu",
          static_cast<unsigned long long>(header.total),
          static_cast<unsigned long long>(total_)));
    }
    if (header.offset != filled_) {
      return ProtocolViolationError(StrFormat(
          "fragment at offset %llu; the stream continues at %llu (%s)",
          static_cast<unsigned long long>(header.offset),
          static_cast<unsigned long long>(filled_),
          header.offset < filled_ ? "overlap" : "gap"));
    }
    if (length > header.total - header.offset) {
      return ProtocolViolationError(StrFormat(
          "fragment of %llu bytes at offset %llu runs past the stream's end "
          "(%llu bytes)",
          static_cast<unsigned long long>(length),
          static_cast<unsigned long long>(header.offset),
          static_cast<unsigned long long>(header.total)));
    }
  }
  const uint8_t* data = payload.data() + kFragmentHeaderSize;
  uint64_t rest = length;
  while (rest > 0 && filled_ < head_size_) {
    const uint64_t to_head =
        rest < head_size_ - filled_ ? rest : head_size_ - filled_;
    head_.insert(head_.end(), data, data + to_head);
    data += to_head;
    rest -= to_head;
    filled_ += to_head;
    if (!head_decided_ && filled_ == kPrefix) {
      head_decided_ = true;
      // 0 (not a UserMessage, or ports that cannot fit): the head stays
      // at kPrefix bytes and the decoder joins the parts.
      const size_t offset = ports::Event::UserPayloadOffset(head_, total_);
      if (offset > head_size_) {
        head_size_ = offset;
        head_.reserve(head_size_);
      }
    }
  }
  body_.insert(body_.end(), data, data + rest);
  filled_ += rest;
  if (filled_ == total_) {
    complete_ = true;
    return true;
  }
  return false;
}

std::vector<uint8_t> FragmentAssembler::TakeMessage() {
  Parts parts = TakeParts();
  if (parts.head.empty())
    return std::move(parts.body);
  parts.head.insert(parts.head.end(), parts.body.begin(), parts.body.end());
  return std::move(parts.head);
}

FragmentAssembler::Parts FragmentAssembler::TakeParts() {
  Parts out{std::move(head_), std::move(body_)};
  Reset();
  return out;
}

void FragmentAssembler::Reset() {
  head_.clear();
  body_.clear();
  head_size_ = 0;
  head_decided_ = true;
  total_ = 0;
  open_ = false;
  complete_ = false;
  filled_ = 0;
}

Status FragmentAssembler::CheckNoStreamOpen(const char* what) const {
  if (!open_ || complete_)
    return Status::Ok();
  return ProtocolViolationError(
      StrFormat("%s in the middle of a fragment stream (%llu of %llu bytes)",
                what, static_cast<unsigned long long>(filled_),
                static_cast<unsigned long long>(total_)));
}

}  // namespace shmports::channel
