#include "core/base/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

namespace shmports {
namespace {

TEST(StatusTest, DefaultIsOkAndEmpty) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "ok");
  EXPECT_TRUE(s.message().empty());
}

TEST(StatusTest, OkCodeWithMessageIsStillOk) {
  Status s(StatusCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, ChainPrintsEveryLayerOutermostFirst) {
  Status s = CorruptError("seals missing (peer did not seal F_SEAL_SHRINK)");
  s.AddContext("map segment");
  Status outer = std::move(s).WithContext("connect to node 3F2A");
  EXPECT_EQ(outer.code(), StatusCode::kCorrupt);
  EXPECT_EQ(outer.ToString(),
            "corrupt: connect to node 3F2A: map segment: seals missing (peer "
            "did not seal F_SEAL_SHRINK)");
  EXPECT_EQ(outer.message(), "seals missing (peer did not seal F_SEAL_SHRINK)");
}

TEST(StatusTest, ContextOnOkStatusIsDropped) {
  Status s;
  s.AddContext("nothing failed");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, CopyIsDeepAndEqual) {
  Status a = PeerClosedError("gone");
  Status b = a;
  b.AddContext("send");
  EXPECT_EQ(a.ToString(), "peer closed: gone");
  EXPECT_EQ(b.ToString(), "peer closed: send: gone");
  EXPECT_FALSE(a == b);
  Status c = a;
  EXPECT_TRUE(a == c);
}

TEST(StatusTest, EveryCodeHasADistinctName) {
  std::set<std::string> names;
  for (int c = 0; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    names.insert(StatusCodeName(static_cast<StatusCode>(c)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(StatusCode::kInternal) + 1);
}

Result<int> ParsePositive(int v) {
  if (v <= 0)
    return InvalidArgumentError("not positive");
  return v;
}

Result<int> Doubled(int v) {
  SHMPORTS_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  return 2 * x;
}

Status Check(int v) {
  SHMPORTS_RETURN_IF_ERROR(Doubled(v).status());
  return Status::Ok();
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> good = Doubled(21);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  EXPECT_TRUE(good.status().ok());
  Result<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(-1).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Check(1).ok());
}

TEST(ResultTest, OkStatusBecomesInternalError) {
  Result<int> r{Status::Ok()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MoveOnlyValuesAndCopies) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);

  Result<std::string> a(std::string("hello"));
  Result<std::string> b = a;
  b = Result<std::string>(NotFoundError("x"));
  EXPECT_EQ(*a, "hello");
  EXPECT_FALSE(b.ok());
  b = a;
  EXPECT_EQ(*b, "hello");
}

}  // namespace
}  // namespace shmports
