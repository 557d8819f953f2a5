#ifndef RACKBUS_CRABBITMQ_SHIM_H
#define RACKBUS_CRABBITMQ_SHIM_H

// Debian 12 ships rabbitmq-c 0.11 with flat headers; 0.12+ moved them under rabbitmq-c/.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif

// amqp_login is variadic, which Swift cannot call: fix the PLAIN mechanism's two arguments here.
static inline amqp_rpc_reply_t rackbus_login_plain(amqp_connection_state_t state,
                                                   const char *vhost,
                                                   int channel_max,
                                                   int frame_max,
                                                   int heartbeat,
                                                   const amqp_table_t *client_properties,
                                                   const char *user,
                                                   const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      client_properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

// Method ids and property flags are cast macros, which Swift does not import: re-export them.
static const amqp_method_number_t rackbus_basic_ack_method = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t rackbus_basic_nack_method = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t rackbus_basic_return_method = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t rackbus_basic_cancel_method = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t rackbus_channel_close_method = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t rackbus_connection_close_method = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t rackbus_connection_blocked_method = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t rackbus_connection_unblocked_method = AMQP_CONNECTION_UNBLOCKED_METHOD;

static const amqp_flags_t rackbus_flag_content_type = AMQP_BASIC_CONTENT_TYPE_FLAG;
static const amqp_flags_t rackbus_flag_headers = AMQP_BASIC_HEADERS_FLAG;
static const amqp_flags_t rackbus_flag_delivery_mode = AMQP_BASIC_DELIVERY_MODE_FLAG;
static const amqp_flags_t rackbus_flag_correlation_id = AMQP_BASIC_CORRELATION_ID_FLAG;
static const amqp_flags_t rackbus_flag_reply_to = AMQP_BASIC_REPLY_TO_FLAG;
static const amqp_flags_t rackbus_flag_expiration = AMQP_BASIC_EXPIRATION_FLAG;
static const amqp_flags_t rackbus_flag_message_id = AMQP_BASIC_MESSAGE_ID_FLAG;
static const amqp_flags_t rackbus_flag_timestamp = AMQP_BASIC_TIMESTAMP_FLAG;
static const amqp_flags_t rackbus_flag_type = AMQP_BASIC_TYPE_FLAG;
static const amqp_flags_t rackbus_flag_app_id = AMQP_BASIC_APP_ID_FLAG;

// The broker closed a channel or the connection: acknowledge so the peer can clean up.
static inline int rackbus_send_channel_close_ok(amqp_connection_state_t state, amqp_channel_t channel) {
    amqp_channel_close_ok_t ok;
    ok.dummy = 0;
    return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

static inline int rackbus_send_connection_close_ok(amqp_connection_state_t state) {
    amqp_connection_close_ok_t ok;
    ok.dummy = 0;
    return amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}

static inline int rackbus_send_heartbeat(amqp_connection_state_t state) {
    amqp_frame_t frame;
    frame.frame_type = AMQP_FRAME_HEARTBEAT;
    frame.channel = 0;
    return amqp_send_frame(state, &frame);
}

#endif
