// `shard` transform: each event to the output of the shard its key hashes to, the way a
// ClickHouse `Distributed` table picks a shard for a row, so rows a weir writes straight
// into each shard's local table are where reads through the Distributed table expect them.
//
// ClickHouse (Distributed, 18.16 and current): the sharding expression's value modulo the
// total weight picks a slot; the shards own consecutive slots, as many as their weight, in
// the cluster's order. The expressions weir computes the same way:
// - `cityHash64(k)` and `intHash64(k)` of an integer column: for an integer argument
//   ClickHouse's cityHash64 is intHash64 of its 64 bits (int_hash64 below), not CityHash of
//   its bytes. (cityHash64 of a String is CityHash v1.0.2, which weir does
//   not compute: use sipHash64 for string keys.)
// - `sipHash64(k)`: SipHash-2-4 with a zero key over the value's bytes (an integer's 8
//   little-endian bytes, a string's bytes), from libcrypto.
// - `k` itself (`hash: none`), for an integer key.
// A Nullable key must be written `assumeNotNull(k)` in the Distributed table (18.16 refuses
// a Nullable expression): null and absent keys are 0 (integers) or '' (strings) here too.
// Outputs are named by ClickHouse's shard number, from 1: `NAME.1`, `NAME.2`, ...
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <charconv>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/json.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "key", .type = OptionType::String, .required = true,
     .doc = "The field holding the sharding key (the column inside the Distributed table's expression)."},
    {.name = "key_type", .type = OptionType::Enum, .default_value = "integer", .choices = {"integer", "string"},
     .doc = "The key column's type in ClickHouse: `integer` ((U)Int8-64; text of an integer is read as one, as an "
            "insert would) or `string`."},
    {.name = "hash", .type = OptionType::Enum, .default_value = "cityHash64",
     .choices = {"cityHash64", "intHash64", "sipHash64", "none"},
     .doc = "The Distributed table's sharding expression around the key: cityHash64(k), intHash64(k), "
            "sipHash64(k), or k itself."},
    {.name = "shards", .type = OptionType::Integer, .doc = "The number of shards, each of weight 1."},
    {.name = "weights", .type = OptionType::StringList,
     .doc = "Instead of `shards`: each shard's weight, in the cluster's order (remote_servers' <weight>)."},
};

enum class Hash { City, Int, Sip, None };

// ClickHouse's intHash64 (IntHash64Impl): MurmurHash3's 64-bit finaliser of the value with
// a constant xor-ed in first. Checked against 18.16: intHash64(0) = 4761183170873013810,
// intHash64(1010) = cityHash64(toUInt64(1010)) = 2992256068930879931 (test/e2e/clickhouse_shards.py).
std::uint64_t int_hash64(std::uint64_t x) {
  x ^= 0x4cf2d2baae6da887ULL;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

struct MacDeleter {
  void operator()(EVP_MAC* mac) const { EVP_MAC_free(mac); }
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};

class Shard final : public Transform {
 public:
  static Result<std::unique_ptr<Shard>> create(const Options& o) {
    auto self = std::make_unique<Shard>();
    self->key_ = FieldPath(o.string("key"));
    self->string_key_ = o.string("key_type") == "string";
    std::string_view hash = o.string("hash");
    self->hash_ = hash == "cityHash64" ? Hash::City : hash == "intHash64" ? Hash::Int : hash == "sipHash64" ? Hash::Sip : Hash::None;
    if (self->string_key_ && (self->hash_ == Hash::City || self->hash_ == Hash::Int || self->hash_ == Hash::None)) {
      return o.error_at("hash", fmt::format("{} of a string key is not computed by weir: shard string keys with "
                                            "sipHash64(k) in the Distributed table and here",
                                            hash == "none" ? "the value" : std::string(hash)));
    }
    std::vector<std::uint64_t> weights;
    if (o.was_set("weights")) {
      if (o.was_set("shards")) return o.error_at("weights", "give either shards or weights, not both");
      for (const std::string& w : o.strings("weights")) {
        std::uint64_t weight = 0;
        auto [end, error] = std::from_chars(w.data(), w.data() + w.size(), weight);
        if (error != std::errc() || end != w.data() + w.size() || weight == 0 || weight > 1000) {
          return o.error_at("weights", fmt::format("'{}' is not a weight (1-1000)", w));
        }
        weights.push_back(weight);
      }
    } else if (o.was_set("shards")) {
      std::int64_t shards = o.integer("shards");
      if (shards < 1 || shards > 1000) return o.error_at("shards", "shards must be 1-1000");
      weights.assign(static_cast<std::size_t>(shards), 1);
    } else {
      return o.error_at("key", "say how many shards: shards (each of weight 1) or weights");
    }
    for (std::size_t shard = 0; shard < weights.size(); ++shard) self->slots_.insert(self->slots_.end(), weights[shard], shard);
    self->shards_ = weights.size();
    if (self->hash_ == Hash::Sip) {
      self->mac_.reset(EVP_MAC_fetch(nullptr, "SIPHASH", nullptr));
      if (self->mac_) self->mac_ctx_.reset(EVP_MAC_CTX_new(self->mac_.get()));
      if (!self->mac_ctx_) return o.error_at("hash", "libcrypto has no SipHash here");
    }
    return self;
  }

  std::vector<std::string> outputs() const override {
    std::vector<std::string> out;
    for (std::size_t shard = 1; shard <= shards_; ++shard) out.push_back(std::to_string(shard));
    return out;
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    std::vector<BatchPtr> out;
    for (std::size_t shard = 0; shard < shards_; ++shard) out.push_back(batch->derive());
    for (const Event& event : batch->events()) {
      auto hashed = hash_of(key_.find(event.fields));
      if (!hashed.ok()) {
        ctx.dead_letter(event, "shard: " + hashed.error().message());
        continue;
      }
      out[slots_[hashed.value() % slots_.size()]]->events().push_back(event);
    }
    batch.reset();
    for (std::size_t shard = 0; shard < shards_; ++shard) ctx.emit(std::move(out[shard]), shard);
  }

  bool runs_off_loop() const override { return true; }  // the batch and its own members only

 private:
  // The sharding expression's value for the key, as ClickHouse computes it.
  Result<std::uint64_t> hash_of(const Value* key) {
    if (string_key_) {
      std::string text;
      std::string_view bytes;
      if (key != nullptr && key->is_string()) bytes = key->as_string();
      else if (key != nullptr && !key->is_null()) bytes = text = to_json(*key);
      return sip_hash(bytes);
    }
    auto number = integer_of(key);
    if (!number.ok()) return number.error();
    switch (hash_) {
      case Hash::City:
      case Hash::Int: return int_hash64(number.value());
      case Hash::Sip: {
        unsigned char bytes[8];
        for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(number.value() >> (8 * i));
        return sip_hash(std::string_view(reinterpret_cast<const char*>(bytes), 8));
      }
      case Hash::None: return number.value();
    }
    return number.value();
  }

  // The key as the 64 bits ClickHouse hashes: an integer (two's complement), the text of one,
  // a boolean (0/1), or 0 for null and absent (assumeNotNull).
  Result<std::uint64_t> integer_of(const Value* key) const {
    if (key == nullptr || key->is_null()) return std::uint64_t{0};
    if (key->is_int()) return static_cast<std::uint64_t>(key->as_int());
    if (key->kind() == Kind::Uint) return key->as_uint();
    if (key->kind() == Kind::Bool) return std::uint64_t{key->as_bool() ? 1u : 0u};
    if (key->is_string()) {
      std::string_view text = key->as_string();
      std::uint64_t u = 0;
      if (auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), u);
          error == std::errc() && end == text.data() + text.size() && !text.empty()) {
        return u;
      }
      std::int64_t i = 0;
      if (auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), i);
          error == std::errc() && end == text.data() + text.size() && !text.empty()) {
        return static_cast<std::uint64_t>(i);
      }
    }
    return Error(fmt::format("the key '{}' is not an integer: {}", key_.text(), to_json(*key).substr(0, 100)));
  }

  Result<std::uint64_t> sip_hash(std::string_view bytes) {
    static const unsigned char kZeroKey[16] = {};
    std::size_t size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
    unsigned char out[8];
    std::size_t written = 0;
    if (EVP_MAC_init(mac_ctx_.get(), kZeroKey, sizeof kZeroKey, params) != 1 ||
        EVP_MAC_update(mac_ctx_.get(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()) != 1 ||
        EVP_MAC_final(mac_ctx_.get(), out, &written, sizeof out) != 1 || written != 8) {
      return Error("SipHash failed in libcrypto");
    }
    std::uint64_t h = 0;
    for (int i = 7; i >= 0; --i) h = (h << 8) | out[i];  // ClickHouse's UInt64: the little-endian bytes
    return h;
  }

  FieldPath key_;
  bool string_key_ = false;
  Hash hash_ = Hash::City;
  std::size_t shards_ = 0;
  std::vector<std::size_t> slots_;  // slot -> shard index
  std::unique_ptr<EVP_MAC, MacDeleter> mac_;
  std::unique_ptr<EVP_MAC_CTX, MacDeleter> mac_ctx_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("shard",
                        "Sends each event to the output of the shard its key hashes to, as a ClickHouse Distributed "
                        "table would (`name.1`, `name.2`, ...)",
                        kSchema, Shard::create);

}  // namespace weir::plugins
