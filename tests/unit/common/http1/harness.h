// Test harness for the HTTP/1 decoders: records events as text and feeds
// every input twice, in one piece and one byte per feed() call, each piece in
// its own heap buffer freed right after the call (so ASan catches a decoder
// that keeps pointing into a buffer it was given earlier).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1/decoder.h"

namespace trellis::http1::testing {

inline std::string describe_fields(const http::HeaderMap& fields) {
  std::string out;
  for (const http::Header& h : fields) out += "[" + h.name + ": " + h.value + "]";
  return out;
}

inline std::string describe(const MessageInfo& info) {
  std::string out = "{";
  switch (info.body) {
    case BodyFraming::none: out += "none"; break;
    case BodyFraming::content_length: out += "length"; break;
    case BodyFraming::chunked: out += "chunked"; break;
    case BodyFraming::until_close: out += "until-close"; break;
  }
  if (info.content_length) out += " content-length=" + std::to_string(*info.content_length);
  if (info.keep_alive) out += " keep-alive";
  if (info.upgrade) out += " upgrade";
  if (info.expect_continue) out += " expect-continue";
  return out + "}";
}

inline std::string describe(const http::RequestHead& h) {
  std::string out = h.method + " " + h.target + " " + std::string(http::version_name(h.version));
  out += " authority=" + h.authority;
  if (h.scheme != "http") out += " scheme=" + h.scheme;
  return out + " " + describe_fields(h.headers);
}

inline std::string describe(const http::ResponseHead& h) {
  return std::string(http::version_name(h.version)) + " " + std::to_string(h.status) + " " +
         h.reason + " " + describe_fields(h.headers);
}

// Handler events as lines; adjacent body slices are merged so that the log
// does not depend on how the input was split.
class EventLog {
 public:
  std::vector<std::string> events;

  void body(const char* data, size_t len) {
    if (!events.empty() && events.back().rfind("body ", 0) == 0) {
      events.back().append(data, len);
    } else {
      events.push_back("body " + std::string(data, len));
    }
  }
  void trailers(const http::HeaderMap& t) { events.push_back("trailers " + describe_fields(t)); }
  void complete() { events.push_back("complete"); }
  void error(const Error& e) {
    events.push_back("error " + std::to_string(e.code) + " " + e.message);
  }
};

class RequestRecorder : public RequestHandler, public EventLog {
 public:
  std::vector<http::RequestHead> heads;
  std::vector<MessageInfo> infos;
  std::vector<http::HeaderMap> trailer_maps;
  RequestDecoder* pause_on_head = nullptr;  // pauses this decoder from on_head

  void on_head(http::RequestHead&& head, const MessageInfo& info) override {
    events.push_back("head " + describe(head) + " " + describe(info));
    heads.push_back(std::move(head));
    infos.push_back(info);
    if (pause_on_head != nullptr) pause_on_head->pause();
  }
  void on_body(const char* data, size_t len) override { body(data, len); }
  void on_trailers(http::HeaderMap&& t) override {
    trailers(t);
    trailer_maps.push_back(std::move(t));
  }
  void on_message_complete() override { complete(); }
  void on_error(const Error& e) override { error(e); }
};

class ResponseRecorder : public ResponseHandler, public EventLog {
 public:
  std::vector<http::ResponseHead> heads;
  std::vector<MessageInfo> infos;
  std::vector<http::HeaderMap> trailer_maps;

  void on_interim(http::ResponseHead&& head) override {
    events.push_back("interim " + describe(head));
  }
  void on_head(http::ResponseHead&& head, const MessageInfo& info) override {
    events.push_back("head " + describe(head) + " " + describe(info));
    heads.push_back(std::move(head));
    infos.push_back(info);
  }
  void on_body(const char* data, size_t len) override { body(data, len); }
  void on_trailers(http::HeaderMap&& t) override {
    trailers(t);
    trailer_maps.push_back(std::move(t));
  }
  void on_message_complete() override { complete(); }
  void on_error(const Error& e) override { error(e); }
};

enum class Feeding { whole, byte_by_byte };

struct RunOptions {
  DecoderOptions decoder;
  bool resume_when_paused = false;  // log "paused@N", resume and go on
  bool finish = false;              // call finish() once the input is used up
};

// What one decoding run produced.
template <typename Head>
struct Run {
  std::vector<std::string> events;
  std::vector<Head> heads;
  std::vector<MessageInfo> infos;
  std::vector<http::HeaderMap> trailers;
  DecoderState state = DecoderState::active;
  size_t consumed = 0;
  std::string rest;  // input not consumed when decoding stopped
};

// Hands `input` to decoder.feed() in one piece or byte by byte until it is used
// up or the decoder stops consuming; returns the bytes consumed.
template <typename Decoder>
size_t feed_input(Decoder& decoder, std::string_view input, Feeding feeding,
                  const RunOptions& options, EventLog& log) {
  size_t pos = 0;
  for (;;) {
    std::string_view piece =
        feeding == Feeding::whole ? input.substr(pos) : input.substr(pos, 1);
    size_t n = 0;
    if (!piece.empty()) {
      std::unique_ptr<char[]> copy(new char[piece.size()]);
      std::copy(piece.begin(), piece.end(), copy.get());
      n = decoder.feed(copy.get(), piece.size());
    }
    pos += n;
    if (options.resume_when_paused && decoder.state() == DecoderState::paused) {
      log.events.push_back("paused@" + std::to_string(pos));
      decoder.resume();
      if (pos < input.size()) continue;
    }
    if (n < piece.size() || pos >= input.size()) break;
  }
  if (options.finish) decoder.finish();
  return pos;
}

inline const char* feeding_name(Feeding f) {
  return f == Feeding::whole ? "whole" : "byte by byte";
}

// Decodes `input` both ways, checks that both give the same outcome (the
// consumed count too, unless decoding failed: an error inside a span is found
// where the feed ends), and returns it.
template <typename Head, typename Recorder, typename Decoder, typename Setup>
Run<Head> decode_both_ways(std::string_view input, const RunOptions& options, Setup&& setup) {
  Run<Head> runs[2];
  const Feeding feedings[2] = {Feeding::whole, Feeding::byte_by_byte};
  for (int i = 0; i < 2; ++i) {
    Recorder recorder;
    Decoder decoder(recorder, options.decoder);
    setup(decoder, recorder);
    Run<Head>& run = runs[i];
    run.consumed = feed_input(decoder, input, feedings[i], options, recorder);
    run.events = recorder.events;
    run.heads = std::move(recorder.heads);
    run.infos = recorder.infos;
    run.trailers = std::move(recorder.trailer_maps);
    run.state = decoder.state();
    run.rest = std::string(input.substr(run.consumed));
  }
  INFO("fed " << std::string(feeding_name(feedings[1])) << " vs "
                << std::string(feeding_name(feedings[0])));
  CHECK(runs[1].events == runs[0].events);
  CHECK(runs[1].state == runs[0].state);
  if (runs[0].state != DecoderState::failed) CHECK(runs[1].consumed == runs[0].consumed);
  return std::move(runs[0]);
}

inline Run<http::RequestHead> decode_requests(std::string_view input,
                                              const RunOptions& options = {}) {
  return decode_both_ways<http::RequestHead, RequestRecorder, RequestDecoder>(
      input, options, [](RequestDecoder&, RequestRecorder&) {});
}

// `methods`: the requests the responses answer, in order.
inline Run<http::ResponseHead> decode_responses(std::string_view input,
                                                const std::vector<std::string>& methods,
                                                const RunOptions& options = {}) {
  return decode_both_ways<http::ResponseHead, ResponseRecorder, ResponseDecoder>(
      input, options, [&](ResponseDecoder& d, ResponseRecorder&) {
        for (const std::string& m : methods) d.expect_response(m);
      });
}

}  // namespace trellis::http1::testing

namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& v) {
    std::string out = "{";
    for (const std::string& s : v) out += "\n  \"" + s + "\"";
    out += "}";
    return String(out.data(), static_cast<String::size_type>(out.size()));
  }
};
template <>
struct StringMaker<trellis::http1::DecoderState> {
  static String convert(trellis::http1::DecoderState s) {
    std::string_view n = trellis::http1::decoder_state_name(s);
    return String(n.data(), static_cast<String::size_type>(n.size()));
  }
};
}  // namespace doctest
