// Fragments: how an event larger than a ring's largest frame crosses a link,
// as consecutive kEventFragmentFrameKind frames (frame_kinds.h), and how the
// receiver checks and reassembles them.
//
// Wire format of one fragment frame's payload (little-endian, fixed offsets;
// frame kind 17, frame flags 0):
//   0   u64 total    size of the whole serialised ports::Event, the same in
//                    every fragment of a stream
//   8   u64 offset   where this fragment's bytes go within the event
//   16  bytes        the fragment's data, at least 1 byte
// A stream is the fragments of one event, in order: the first has offset 0,
// each next one starts where the previous one ended (offset == previous
// offset + previous data length), and the last one ends exactly at `total`.
// The reassembled bytes are one serialised ports::Event, decoded as a whole
// kEventFrameKind frame's payload would be.
//
// Rules the receiver enforces (each breach is a kProtocolViolation naming it,
// and the Router drops the peer with that reason):
//   - the payload is at least kFragmentHeaderSize + 1 bytes and the frame's
//     flags are 0;
//   - total is at least 1 and at most the receiver's largest message
//     (RouterOptions::max_message_bytes, 64 MiB by default);
//   - the first fragment of a stream has offset 0; a fragment with offset 0
//     while a stream is open is "a new stream before the old one finished";
//   - later fragments carry the stream's total and continue exactly where the
//     previous one ended (a gap, a rewind or an overlap is refused);
//   - offset + data length never exceeds total;
//   - while a stream is open, only fragment frames may arrive on the link:
//     a whole event frame (or a goodbye) in the middle is refused. The
//     sender writes a stream's fragments consecutively into the link (events
//     queued behind it wait in the per-link FIFO), so an honest peer never
//     interleaves.
// Senders cut streams into fragments of up to max_frame - kFragmentHeaderSize
// data bytes; the receiver does not insist on any particular cut.
//
// Memory: the receiver allocates `total` bytes when the first fragment
// arrives (charged up front against the sending peer's budget; the limit on
// total bounds it, and a link carries one stream at a time, without zeroing
// them) and copies each fragment's data into it once. In split mode the
// block is two: the serialised UserMessage up to its user payload (`head`,
// where ports::Event::UserPayloadOffset says from the first fragment) and
// the user payload itself (`body`), which the decoder adopts as the
// message's payload (ports::Event::Deserialize(head, body, ...)): the bytes
// are copied out of the ring once and never again on their way to the user.
//
// Thread-safety: FragmentAssembler is single-threaded (the Router's io
// thread owns one per link); the free functions work on values.
#ifndef SHMPORTS_CHANNEL_FRAGMENT_H_
#define SHMPORTS_CHANNEL_FRAGMENT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/base/status.h"
#include "core/ports/event.h"

namespace shmports::channel {

inline constexpr size_t kFragmentHeaderSize = 16;
inline constexpr uint64_t kDefaultMaxMessageBytes = uint64_t{64} << 20;

struct FragmentHeader {
  uint64_t total = 0;
  uint64_t offset = 0;
};

// Writes the 16-byte header at the start of `out` (which must hold at least
// kFragmentHeaderSize bytes).
void WriteFragmentHeader(std::span<uint8_t> out, const FragmentHeader& header);

// Reads the header of a fragment payload; kProtocolViolation if `payload`
// is too short to hold a header and one data byte.
Result<FragmentHeader> ReadFragmentHeader(std::span<const uint8_t> payload);

// Data bytes one fragment frame carries in a ring whose largest frame
// payload is `max_frame` (0 if max_frame <= kFragmentHeaderSize).
inline size_t FragmentDataCapacity(uint32_t max_frame) {
  return max_frame > kFragmentHeaderSize ? max_frame - kFragmentHeaderSize : 0;
}

// A whole fragment payload (header + data), for tests and fault injectors.
std::vector<uint8_t> EncodeFragment(uint64_t total,
                                    uint64_t offset,
                                    std::span<const uint8_t> data);

// Cuts `message` into the fragment payloads an honest sender writes into a
// ring whose largest frame payload is `max_frame` (> kFragmentHeaderSize).
std::vector<std::vector<uint8_t>> SplitIntoFragments(
    std::span<const uint8_t> message,
    uint32_t max_frame);

// Receiver side of the fragment streams of one link.
class FragmentAssembler {
 public:
  enum class Mode {
    // TakeMessage: one contiguous buffer.
    kWhole,
    // TakeParts: a UserMessage's user payload in a buffer of its own.
    kSplitUserPayload,
  };

  // `max_message_bytes`: the largest `total` accepted.
  explicit FragmentAssembler(uint64_t max_message_bytes,
                             Mode mode = Mode::kWhole);

  // Takes one fragment frame (its payload and frame flags). Ok(true): the
  // stream is complete and TakeMessage() returns it; Ok(false): more
  // fragments are due; kProtocolViolation naming the rule otherwise (the
  // assembler is then unusable: the caller drops the peer).
  Result<bool> Accept(std::span<const uint8_t> payload, uint16_t flags = 0);

  // The completed message; the assembler is then idle again. (In split mode
  // the parts are joined: a copy.)
  std::vector<uint8_t> TakeMessage();

  // The completed message as `head` followed by `body` (kWhole: head is
  // empty); the assembler is then idle again. Which bytes form the head
  // only decides where the buffers are cut; nothing is judged here.
  struct Parts {
    std::vector<uint8_t> head;
    std::vector<uint8_t> body;
  };
  Parts TakeParts();

  // kProtocolViolation if a stream is open (a whole frame of another kind
  // may not interrupt it); `what` names the interrupting frame.
  Status CheckNoStreamOpen(const char* what) const;

  bool stream_open() const { return open_; }
  // Bytes allocated for the open stream (its total), 0 when idle.
  uint64_t charged_bytes() const { return open_ ? total_ : 0; }

 private:
  void Reset();

  const uint64_t max_message_bytes_;
  const Mode mode_;
  bool open_ = false;
  bool complete_ = false;
  uint64_t total_ = 0;
  uint64_t filled_ = 0;
  // Split mode reads the UserMessage header and fixed payload first.
  static constexpr size_t kPrefix =
      ports::kEventHeaderSize + ports::kUserMessageFixedSize;

  // The first head_size_ bytes of the stream go to head_, the rest to body_
  // (both reserved up front, filled by appending: never zeroed). Until
  // head_decided_, head_size_ is kPrefix and may grow once those bytes are
  // in.
  size_t head_size_ = 0;
  bool head_decided_ = true;
  std::vector<uint8_t> head_;
  std::vector<uint8_t> body_;
};

}  // namespace shmports::channel

#endif  // SHMPORTS_CHANNEL_FRAGMENT_H_
