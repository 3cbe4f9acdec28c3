#include "weir/http_client.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "weir/uv.hpp"

namespace weir::http {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;

struct MultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
using MultiHandle = std::unique_ptr<CURLM, MultiDeleter>;

// One request in flight: the easy handle and everything curl reads from or writes to.
struct Transfer {
  ClientRequest request;
  Client::Callback done;
  EasyHandle easy;
  HeaderList header_list;
  ClientResponse response;
  char error[CURL_ERROR_SIZE] = {};
  std::chrono::steady_clock::time_point started;
  std::uint64_t id = 0;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::size_t n = size * count;
  if (t->request.on_body) {
    long status = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return t->request.on_body(std::string_view(data, n)) ? n : CURL_WRITEFUNC_PAUSE;
  }
  std::size_t limit = t->request.max_response_bytes;
  std::size_t room = limit - std::min(limit, t->response.body.size());
  t->response.body.append(data, std::min(n, room));
  return n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t->response.headers.clear();  // a new response (after 100 Continue or a redirect)
    return line.size();
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  t->response.headers.push_back(Header{std::move(name), std::string(value)});
  return line.size();
}

// Sets up `t->easy` from `t->request`. Returns false (with the error in the response) when
// curl refuses an option.
bool prepare(Transfer& t) {
  t.easy.reset(curl_easy_init());
  if (!t.easy) {
    t.response.transport_error = "curl_easy_init failed";
    return false;
  }
  CURL* e = t.easy.get();
  const ClientRequest& r = t.request;
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.connect_timeout.count()));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
  // A streamed body comes in curl's buffer-sized pieces: 16 KiB by default, a callback (and
  // a write downstream) each; 512 KiB is curl's maximum.
  if (r.on_body) curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
  if (r.method == "POST" || r.method == "PUT") {
    std::string_view body = r.borrowed_body ? *r.borrowed_body : std::string_view(r.body);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    // curl sends at most one upload buffer each time the loop finds the socket writable; with
    // the default 64 KiB a 3 MiB insert took ~50 loop turns, each behind a whole batch of
    // decoding. 2 MiB is curl's maximum.
    if (body.size() > 64 * 1024) curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
    if (r.method == "PUT") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
  } else if (r.method != "GET") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  if (!r.user.empty()) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, r.user.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, r.password.c_str());
  }
  curl_slist* list = nullptr;
  // No "Expect: 100-continue" round trip for large bodies: the servers we talk to answer
  // errors after reading the body anyway.
  list = curl_slist_append(list, "Expect:");
  for (const Header& h : r.headers) list = curl_slist_append(list, (h.name + ": " + h.value).c_str());
  t.header_list.reset(list);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
  return true;
}

void finish(Transfer& t, CURLcode result) {
  t.response.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.started).count();
  if (result == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(t.easy.get(), CURLINFO_RESPONSE_CODE, &status);
    t.response.status = static_cast<int>(status);
  } else {
    t.response.status = 0;
    t.response.transport_error = t.error[0] != '\0' ? std::string(t.error) : curl_easy_strerror(result);
  }
}

}  // namespace

const std::string* ClientResponse::header(std::string_view lower_case_name) const {
  for (const Header& h : headers) {
    if (h.name == lower_case_name) return &h.value;
  }
  return nullptr;
}

std::string url_encode(std::string_view text) {
  // libcurl keeps A-Z a-z 0-9 - . _ ~ and percent-encodes every other byte; since 7.82 it
  // needs no handle.
  std::unique_ptr<char, decltype(&curl_free)> escaped(
      curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size())), &curl_free);
  return escaped ? std::string(escaped.get()) : std::string();
}

bool url_host_is_loopback(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), &curl_url_cleanup);
  if (!parsed || curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return false;
  char* host_text = nullptr;
  if (curl_url_get(parsed.get(), CURLUPART_HOST, &host_text, 0) != CURLUE_OK) return false;
  std::string host(host_text);
  curl_free(host_text);
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
  if (host == "localhost" || host.ends_with(".localhost")) return true;  // RFC 6761: always loopback
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    in6_addr v6{};
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

struct Client::Impl {
  uv_loop_t* loop;
  MultiHandle multi;
  UvTimer timer;
  // One poll handle per socket curl wants watched.
  std::unordered_map<curl_socket_t, std::unique_ptr<UvHandle<uv_poll_t>>> polls;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> transfers;
  std::vector<std::unique_ptr<Transfer>> failed;  // never started: reported on the next turn
  UvTimer failed_timer;
  std::uint64_t last_id = 0;

  explicit Impl(uv_loop_t* l) : loop(l) {
    global_init();
    multi.reset(curl_multi_init());
    curl_multi_setopt(multi.get(), CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi.get(), CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi.get(), CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(multi.get(), CURLMOPT_TIMERDATA, this);
  }

  ~Impl() {
    for (auto& [raw, transfer] : transfers) curl_multi_remove_handle(multi.get(), transfer->easy.get());
    transfers.clear();
    polls.clear();  // closes the poll handles (their memory goes with the close callbacks)
    timer.close();
    failed_timer.close();
  }

  static int on_socket(CURL*, curl_socket_t socket, int what, void* user, void*) {
    auto* self = static_cast<Impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      if (auto it = self->polls.find(socket); it != self->polls.end()) {
        uv_poll_stop(it->second->get());
        self->polls.erase(it);
      }
      return 0;
    }
    auto& poll = self->polls[socket];
    if (!poll) {
      poll = std::make_unique<UvHandle<uv_poll_t>>();
      if (uv_poll_init_socket(self->loop, poll->get(), socket) != 0) {
        self->polls.erase(socket);
        return -1;
      }
      poll->mark_initialized();
      poll->get()->data = self;
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(poll->get(), events, [](uv_poll_t* handle, int status, int ready) {
      auto* impl = static_cast<Impl*>(handle->data);
      if (impl == nullptr) return;
      int flags = 0;
      if (status < 0) flags = CURL_CSELECT_ERR;
      if (ready & UV_READABLE) flags |= CURL_CSELECT_IN;
      if (ready & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
      uv_os_fd_t fd;
      uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fd);
      impl->act(static_cast<curl_socket_t>(fd), flags);
    });
    return 0;
  }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<Impl*>(user);
    if (timeout_ms < 0) {
      if (self->timer.initialized()) uv_timer_stop(self->timer.get());
      return 0;
    }
    start_timer(self->timer, self->loop, self, [](uv_timer_t* t) {
      if (auto* impl = static_cast<Impl*>(t->data)) impl->act(CURL_SOCKET_TIMEOUT, 0);
    }, static_cast<std::uint64_t>(timeout_ms));
    return 0;
  }

  void act(curl_socket_t socket, int flags) {
    int running = 0;
    curl_multi_socket_action(multi.get(), socket, flags, &running);
    collect();
  }

  // Hands finished transfers to their callbacks, after curl is done with them.
  void collect() {
    std::vector<std::unique_ptr<Transfer>> finished;
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi.get(), &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &raw);
      CURLcode result = message->data.result;
      curl_multi_remove_handle(multi.get(), message->easy_handle);
      auto it = transfers.find(raw);
      if (it == transfers.end()) continue;
      finish(*it->second, result);
      finished.push_back(std::move(it->second));
      transfers.erase(it);
    }
    // Callbacks last: they may start new requests.
    for (auto& t : finished) {
      t->easy.reset();
      t->done(std::move(t->response));
    }
  }

  std::uint64_t send(ClientRequest request, Callback done) {
    auto t = std::make_unique<Transfer>();
    t->id = ++last_id;
    t->request = std::move(request);
    t->done = std::move(done);
    t->started = std::chrono::steady_clock::now();
    if (!prepare(*t) || curl_multi_add_handle(multi.get(), t->easy.get()) != CURLM_OK) {
      // Reported on the next loop turn, like any other failure: callers never see a
      // callback run inside send().
      if (t->response.transport_error.empty()) t->response.transport_error = "curl_multi_add_handle failed";
      failed.push_back(std::move(t));
      start_timer(failed_timer, loop, this, [](uv_timer_t* handle) {
        auto* impl = static_cast<Impl*>(handle->data);
        if (impl == nullptr) return;
        auto now = std::move(impl->failed);
        impl->failed.clear();
        for (auto& f : now) {
          f->easy.reset();
          f->done(std::move(f->response));
        }
      }, 0);
      return failed.back()->id;
    }
    Transfer* raw = t.get();
    transfers.emplace(raw, std::move(t));
    return raw->id;
  }

  Transfer* find(std::uint64_t id) {
    for (auto& [raw, transfer] : transfers) {
      if (raw->id == id) return raw;
    }
    return nullptr;
  }

  void resume(std::uint64_t id) {
    // curl marks an unpaused transfer for an immediate timeout, which the timer serves.
    if (Transfer* t = find(id)) curl_easy_pause(t->easy.get(), CURLPAUSE_CONT);
  }

  void cancel(std::uint64_t id) {
    if (Transfer* t = find(id)) {
      curl_multi_remove_handle(multi.get(), t->easy.get());
      transfers.erase(t);
      return;
    }
    std::erase_if(failed, [&](const auto& f) { return f->id == id; });
  }
};

Client::Client(uv_loop_t* loop) : impl_(std::make_unique<Impl>(loop)) {}
Client::~Client() = default;
std::uint64_t Client::send(ClientRequest request, Callback done) { return impl_->send(std::move(request), std::move(done)); }
void Client::resume(std::uint64_t id) { impl_->resume(id); }
void Client::cancel(std::uint64_t id) { impl_->cancel(id); }
std::size_t Client::in_flight() const { return impl_->transfers.size(); }

ClientResponse send_blocking(const ClientRequest& request) {
  global_init();
  Transfer t;
  t.request = request;
  t.started = std::chrono::steady_clock::now();
  if (!prepare(t)) return t.response;
  CURLcode result = curl_easy_perform(t.easy.get());
  finish(t, result);
  return t.response;
}

}  // namespace weir::http
