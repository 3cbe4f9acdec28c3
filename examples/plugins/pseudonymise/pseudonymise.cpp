// `type: pseudonymise`: replaces personal fields (CVAT's user_email and user_name) with a
// keyed hash, HMAC-SHA256 under a secret key, so analytics can leave the company while the
// same person still gets the same pseudonym in every event, and nobody without the key can
// tell who it is or test a guess.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <weir/sdk.hpp>

namespace {

using namespace weir::sdk;

class Pseudonymise {
 public:
  static constexpr const char* type = "pseudonymise";
  static constexpr const char* summary = "Replaces personal fields with a keyed hash (HMAC-SHA256)";
  static inline const std::vector<Option> options = {
      {.name = "fields", .type = OptionType::StringList, .default_value = "[user_email, user_name]",
       .doc = "The fields to replace (dotted paths). Strings are hashed as they are; numbers and booleans as "
              "their JSON text; absent and null fields are left alone."},
      {.name = "key_env", .type = OptionType::String, .default_value = "PSEUDONYMISE_KEY",
       .doc = "The environment variable holding the secret key (refused when unset or empty)."},
      {.name = "length", .type = OptionType::Integer, .default_value = "64",
       .doc = "Hex digits of the hash kept, 16 to 64."},
      {.name = "prefix", .type = OptionType::String, .default_value = "",
       .doc = "Text put before the hash (e.g. `anon-`)."},
  };

  explicit Pseudonymise(const Options& o) : prefix_(o.string("prefix")) {
    for (const std::string& field : o.strings("fields")) fields_.emplace_back(field);
    if (fields_.empty()) o.fail("fields", "fields must name at least one field");
    std::string env = o.string("key_env");
    const char* key = std::getenv(env.c_str());
    if (key == nullptr || *key == '\0') o.fail("key_env", env + " is empty: pseudonymise needs a secret key");
    key_ = key;
    std::int64_t length = o.integer("length");
    if (length < 16 || length > 64) o.fail("length", "length must be 16 to 64 hex digits");
    length_ = static_cast<std::size_t>(length);
  }

  void start(Context& ctx) {
    replaced_ = ctx.counter("pseudonymised_fields_total", "Fields replaced with their keyed hash.");
  }

  void process(Batch& batch, Context& ctx) {
    std::uint64_t replaced = 0;
    for (Event event : batch) {
      for (const Path& field : fields_) {
        Value value = event.get(field);
        if (!value || value.is_null()) continue;
        if (value.is_object() || value.is_array()) {
          event.reject("pseudonymise: " + field.text() + " is an object or array, not a name to replace");
          break;
        }
        std::string text = value.is_string() ? std::string(value.as_string()) : ctx.to_json(value);
        char* out = event.set_string(value, prefix_.size() + length_);
        prefix_.copy(out, prefix_.size());
        hash_hex(text, out + prefix_.size());
        ++replaced;
      }
    }
    replaced_.add(replaced);
    ctx.emit(batch);
  }

 private:
  // The first length_ hex digits of HMAC-SHA256(key, text), at `out`.
  void hash_hex(const std::string& text, char* out) const {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(text.data()),
             text.size(), digest, &size) == nullptr) {
      // weir dead-letters the batch's events: none goes downstream unhashed (the dead
      // letters keep the originals: protect the dead-letter file as the input).
      throw std::runtime_error("HMAC-SHA256 failed");
    }
    static constexpr char kDigits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < length_; ++i) out[i] = kDigits[(digest[i / 2] >> (i % 2 == 0 ? 4 : 0)) & 0xF];
  }

  std::vector<Path> fields_;
  std::string key_;
  std::size_t length_ = 64;
  std::string prefix_;
  Counter replaced_;
};

}  // namespace

WEIR_PLUGIN("pseudonymise", "1.0.0", Pseudonymise)
