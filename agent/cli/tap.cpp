#include "cli/tap.hpp"

#include <curl/curl.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

namespace weir::cli {

namespace {

std::atomic<bool> interrupted{false};

struct Answer {
  std::string body;
  std::uint64_t seen = 0, sampled = 0;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<Answer*>(user)->body.append(data, size * n);
  return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  std::string line(data, size * n);
  auto number = [&](std::string_view name) -> std::optional<std::uint64_t> {
    if (line.size() <= name.size() || curl_strnequal(line.c_str(), name.data(), name.size()) == 0) return std::nullopt;
    return std::strtoull(line.c_str() + name.size(), nullptr, 10);
  };
  auto* answer = static_cast<Answer*>(user);
  if (auto v = number("x-weir-tap-seen:")) answer->seen = *v;
  if (auto v = number("x-weir-tap-sampled:")) answer->sampled = *v;
  return size * n;
}

}  // namespace

int run_tap(const TapOptions& options) {
  std::signal(SIGINT, [](int) { interrupted = true; });
  std::signal(SIGTERM, [](int) { interrupted = true; });
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    std::fprintf(stderr, "error: cannot start libcurl\n");
    return 1;
  }
  std::string components;
  for (const std::string& c : options.components) components += (components.empty() ? "" : ",") + c;
  std::unique_ptr<char, void (*)(void*)> escaped(
      curl_easy_escape(curl.get(), components.c_str(), static_cast<int>(components.size())), curl_free);
  std::unique_ptr<char, void (*)(void*)> interval(
      curl_easy_escape(curl.get(), options.interval.c_str(), static_cast<int>(options.interval.size())), curl_free);
  std::string url = fmt::format("http://{}/tap?components={}&limit={}&interval={}", options.api, escaped.get(),
                                options.limit, interval.get());
  std::FILE* out = stdout;
  if (!options.output.empty()) {
    out = std::fopen(options.output.c_str(), "wb");
    if (out == nullptr) {
      std::fprintf(stderr, "error: cannot write %s\n", options.output.c_str());
      return 1;
    }
  }
  auto began = std::chrono::steady_clock::now();
  std::uint64_t total_seen = 0, total_sampled = 0;
  int code = 0;
  while (!interrupted) {
    if (options.duration && std::chrono::steady_clock::now() - began >= *options.duration) break;
    Answer answer;
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &answer);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 75L);
    CURLcode rc = curl_easy_perform(curl.get());
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      std::fprintf(stderr, "error: %s: %s\n", url.c_str(),
                   rc != CURLE_OK ? curl_easy_strerror(rc) : answer.body.c_str());
      code = 1;
      break;
    }
    std::fwrite(answer.body.data(), 1, answer.body.size(), out);
    std::fflush(out);
    total_seen += answer.seen;
    total_sampled += answer.sampled;
    std::fprintf(stderr, "tap: %llu of %llu events this interval (%llu of %llu in all)\n",
                 static_cast<unsigned long long>(answer.sampled), static_cast<unsigned long long>(answer.seen),
                 static_cast<unsigned long long>(total_sampled), static_cast<unsigned long long>(total_seen));
  }
  if (out != stdout) std::fclose(out);
  return code;
}

}  // namespace weir::cli
