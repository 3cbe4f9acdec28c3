// Batches: derive shares, clone copies, absorb merges; acknowledgements follow the data.
#include <catch2/catch.hpp>

#include "weir/buffer.hpp"
#include "weir/event.hpp"
#include "weir/json.hpp"
#include "weir/field_path.hpp"

using namespace weir;

namespace {
BatchPtr numbered(int from, int to, std::shared_ptr<int> acked = nullptr) {
  auto batch = EventBatch::create();
  for (int i = from; i < to; ++i) batch->add_event().fields.set(batch->arena(), "n", Value::integer(i));
  batch->set_byte_size(static_cast<std::uint64_t>(to - from) * 8);
  if (acked) batch->add_ack(Acknowledgement::make([acked](DeliveryStatus s, const std::string&) {
    *acked = s == DeliveryStatus::Delivered ? 1 : -1;
  }));
  return batch;
}
}  // namespace

TEST_CASE("batch: derive shares the arena and the acknowledgement") {
  auto acked = std::make_shared<int>(0);
  auto batch = numbered(0, 4, acked);
  auto even = batch->derive();
  for (const Event& e : batch->events()) {
    if (e.fields.find("n")->as_int() % 2 == 0) even->events().push_back(e);
  }
  CHECK(even->shared_arena() == batch->shared_arena());
  batch.reset();
  CHECK(*acked == 0);  // `even` still holds it
  CHECK(to_json(even->events()[1].fields) == R"({"n":2})");
  even.reset();
  CHECK(*acked == 1);
}

TEST_CASE("batch: clone is independent; a failure on any copy fails the acknowledgement") {
  auto acked = std::make_shared<int>(0);
  auto batch = numbered(0, 3, acked);
  auto copy = batch->clone();
  CHECK(copy->shared_arena() != batch->shared_arena());
  copy->events()[0].fields.set(copy->arena(), "n", Value::integer(99));
  CHECK(to_json(batch->events()[0].fields) == R"({"n":0})");
  CHECK(copy->byte_size() == batch->byte_size());
  copy->fail("disk full");
  copy.reset();
  CHECK(*acked == 0);
  batch.reset();
  CHECK(*acked == -1);
}

TEST_CASE("batch: absorb merges events, sizes and acknowledgements, keeping arenas alive") {
  auto first_acked = std::make_shared<int>(0), second_acked = std::make_shared<int>(0);
  auto a = numbered(0, 2, first_acked);
  auto b = numbered(2, 5, second_acked);
  a->absorb(std::move(*b));
  b.reset();
  REQUIRE(a->size() == 5);
  CHECK(a->byte_size() == 40);
  CHECK(a->acks().size() == 2);
  CHECK(to_json(a->events()[4].fields) == R"({"n":4})");  // b's arena is still alive
  CHECK(*second_acked == 0);
  auto acks = a->take_acks();
  a.reset();
  CHECK(*first_acked == 0);  // a sink holds them until its write is durable
  acks.clear();
  CHECK(*first_acked == 1);
  CHECK(*second_acked == 1);
}

TEST_CASE("FieldPath: finds, sets and erases through nested objects, whatever the layout", "[value][field_path]") {
  Arena arena;
  JsonParser parser;
  FieldPath id("payload.request.id");
  FieldPath user("user_id");
  auto first = parser.parse(R"({"user_id":1,"payload":{"request":{"id":"a"}}})", arena).value();
  // The same keys in another order: the hint from the first event must not mislead.
  auto second = parser.parse(R"({"payload":{"x":1,"request":{"other":2,"id":"b"}},"y":0,"user_id":2})", arena).value();
  auto missing = parser.parse(R"({"payload":{"request":5}})", arena).value();
  for (int round = 0; round < 2; ++round) {
    REQUIRE(id.find(first) != nullptr);
    CHECK(id.find(first)->as_string() == "a");
    REQUIRE(id.find(second) != nullptr);
    CHECK(id.find(second)->as_string() == "b");
    CHECK(user.find(first)->as_int() == 1);
    CHECK(user.find(second)->as_int() == 2);
    CHECK(id.find(missing) == nullptr);
    CHECK(user.find(missing) == nullptr);
  }
  Value null;
  CHECK(id.find(null) == nullptr);
  CHECK(FieldPath().find(first) == nullptr);
  CHECK(FieldPath("payload.request").depth() == 2);

  // set: replaces, creates intermediates, replaces a non-object intermediate.
  id.set(arena, first, Value::string_view("z"));
  CHECK(to_json(first) == R"({"user_id":1,"payload":{"request":{"id":"z"}}})");
  id.set(arena, missing, Value::integer(7));
  CHECK(to_json(missing) == R"({"payload":{"request":{"id":7}}})");
  Value empty;
  id.set(arena, empty, Value::boolean(true));
  CHECK(to_json(empty) == R"({"payload":{"request":{"id":true}}})");

  // New keys are copied: the event does not point into the FieldPath.
  Value event = parser.parse(R"({"a":1})", arena).value();
  {
    FieldPath temporary("made.up");
    temporary.set(arena, event, Value::integer(2));
  }
  CHECK(to_json(event) == R"({"a":1,"made":{"up":2}})");

  CHECK(id.erase(second));
  CHECK(to_json(second) == R"({"payload":{"x":1,"request":{"other":2}},"y":0,"user_id":2})");
  CHECK_FALSE(id.erase(second));
  CHECK_FALSE(FieldPath("nothing.here").erase(second));
}

TEST_CASE("ByteBuffer: a moved-from buffer is empty and takes appends again") {
  ByteBuffer a;
  a.append("rows of an upload");
  ByteBuffer b = std::move(a);
  CHECK(b.view() == "rows of an upload");
  CHECK(a.size() == 0);  // NOLINT(bugprone-use-after-move): what is checked
  CHECK(a.capacity() == 0);
  a.append("again");  // wrote through a null pointer when the move kept the capacity
  CHECK(a.view() == "again");
  ByteBuffer c(64);
  c = std::move(b);
  CHECK(c.view() == "rows of an upload");
  CHECK(b.empty());
}
