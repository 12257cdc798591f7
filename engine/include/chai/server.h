/* chai — a small HTTP/1.1 server on libmicrohttpd for `chai serve`, driven from one thread.
 *
 * The caller owns the loop: chai_server_run() waits for socket activity (at most timeout_ms) and
 * calls the handler, in the calling thread, once per complete request (headers and body read).
 * The handler answers before it returns, with chai_server_respond() (a whole body) or
 * chai_server_respond_stream() (a body written later, piece by piece, as Server-Sent Events are).
 * Nothing here is thread-safe; everything runs in the thread that calls chai_server_run().
 *
 * What the server enforces before a handler sees a request: the body limit (413), a header limit
 * (the connection's read buffer), the connection limit, and an idle timeout after which a silent
 * client is disconnected. Malformed HTTP is answered 400 by libmicrohttpd. */
#ifndef CHAI_SERVER_H
#define CHAI_SERVER_H

#include <stddef.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chai_server chai_server;
typedef struct chai_server_request chai_server_request;
typedef struct chai_server_stream chai_server_stream;

typedef struct chai_server_config {
  const char *host;         /* a numeric IPv4 or IPv6 address; NULL: "127.0.0.1" */
  int port;                 /* 0..65535; 0 picks a free port (chai_server_port tells which) */
  size_t max_body;          /* larger request bodies are answered 413; 0: 64 KiB */
  unsigned timeout_s;       /* a connection silent this long is closed; 0: 15 s */
  unsigned max_connections; /* further connections are refused; 0: 256 */
  size_t max_stream_buffer; /* a stream whose unsent bytes pass this is dropped; 0: 1 MiB */
  /* Called once per complete request, in chai_server_run's thread; must answer the request
   * (an unanswered one gets 500). */
  void (*handler)(void *ud, chai_server_request *req);
  void *ud;
} chai_server_config;

/* Binds, listens and returns a new server in *out. Fails with CHAI_ERR_ARG for a bad host or
 * port and CHAI_ERR_IO when the address cannot be bound (the message says why: in use, ...). */
chai_status chai_server_open(const chai_server_config *cfg, chai_server **out);

/* The port the server listens on (the chosen one when the config asked for 0). */
int chai_server_port(const chai_server *s);

/* Waits up to timeout_ms (0: does not wait) for socket activity, then serves what is ready:
 * reads requests, calls the handler for complete ones, writes responses and stream bytes. A
 * signal arriving while it waits makes it return early. Not reentrant: a handler must not call
 * it. Returns CHAI_ERR_STATE when called re-entrantly, CHAI_ERR_IO when polling fails. */
chai_status chai_server_run(chai_server *s, int timeout_ms);

/* Closes the listening socket: new connections are refused, open ones are still served. */
void chai_server_stop_accepting(chai_server *s);

/* Ends every open stream, closes every connection and frees the server. NULL is fine. Streams
 * the caller still holds stay valid (closed) until released. */
void chai_server_close(chai_server *s);

/* ---- the request, valid only while the handler runs ---- */

const char *chai_server_request_method(const chai_server_request *r); /* "GET", ... as sent */
/* The path, percent-decoded, without the query string ("/jobs/abc"). */
const char *chai_server_request_path(const chai_server_request *r);
/* A request header's value (name case-insensitive), NULL when absent. */
const char *chai_server_request_header(const chai_server_request *r, const char *name);
/* A query-string argument's value ("?token=x" → "x" for "token"), percent-decoded; NULL when
 * absent. */
const char *chai_server_request_arg(const chai_server_request *r, const char *name);
/* The body (NUL-terminated for convenience; it may hold NULs itself) and its length. */
const char *chai_server_request_body(const chai_server_request *r, size_t *len);

/* Answers with a whole body (copied). `headers` is NULL or name, value, ..., NULL. Fails with
 * CHAI_ERR_STATE when the request was already answered, CHAI_ERR_ARG for a status outside
 * 100..599 or a header with a line break. */
chai_status chai_server_respond(chai_server_request *r, int status, const char *const *headers,
                                const void *body, size_t len);

/* Answers with a body of unknown length sent as it is written (chunked). Returns in *out a new
 * reference to the stream (release it with chai_server_stream_release); the connection holds
 * another until it closes. */
chai_status chai_server_respond_stream(chai_server_request *r, int status,
                                       const char *const *headers, chai_server_stream **out);

/* ---- streams ---- */

/* Queues bytes for the client (copied). Fails with CHAI_ERR_STATE when the stream was ended or
 * its client is gone, and drops the stream (client disconnected, CHAI_ERR_IO) when more than
 * max_stream_buffer bytes wait unsent: a client that does not read does not grow the server. */
chai_status chai_server_stream_write(chai_server_stream *st, const void *data, size_t len);
/* Ends the body once the queued bytes are sent. Idempotent. */
void chai_server_stream_end(chai_server_stream *st);
/* 1 once the client is gone or the stream was ended or dropped: nothing more can be written. */
int chai_server_stream_closed(const chai_server_stream *st);
/* Drops the caller's reference. NULL is fine. */
void chai_server_stream_release(chai_server_stream *st);

#ifdef __cplusplus
}
#endif
#endif
