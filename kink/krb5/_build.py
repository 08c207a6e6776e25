"""cffi (API mode) build of kink.krb5._krb5: exactly the MIT libkrb5 calls and structs kink uses.

Run by setuptools at install time (setup.py `cffi_modules`). API mode compiles against the
installed krb5.h, so struct layouts and constants come from the header, not from this file;
the `...;` in each struct lets the compiler place the fields. MIT krb5 only: Heimdal's
structs differ. Build flags come from `krb5-config` (Debian: libkrb5-dev).
"""

import shlex
import subprocess

from cffi import FFI

CDEF = """
typedef int32_t krb5_int32;
typedef uint32_t krb5_ui_4;
typedef uint8_t krb5_octet;
typedef krb5_int32 krb5_error_code;
typedef krb5_int32 krb5_timestamp;
typedef krb5_int32 krb5_deltat;
typedef krb5_int32 krb5_enctype;
typedef krb5_int32 krb5_keyusage;
typedef krb5_int32 krb5_flags;
typedef unsigned int krb5_kvno;
typedef unsigned int krb5_boolean;

typedef struct _krb5_context *krb5_context;
typedef struct _krb5_auth_context *krb5_auth_context;
typedef struct _krb5_kt *krb5_keytab;
typedef struct _krb5_ccache *krb5_ccache;
typedef struct _profile_t *profile_t;
typedef struct _krb5_get_init_creds_opt krb5_get_init_creds_opt;

typedef struct _krb5_data { unsigned int length; char *data; ...; } krb5_data;
typedef struct krb5_principal_data {
    krb5_int32 type; ...;
} krb5_principal_data;
typedef krb5_principal_data *krb5_principal;
typedef const krb5_principal_data *krb5_const_principal;
typedef struct _krb5_keyblock {
    krb5_enctype enctype; unsigned int length; krb5_octet *contents; ...;
} krb5_keyblock;
typedef struct _krb5_ticket_times {
    krb5_timestamp authtime; krb5_timestamp starttime; krb5_timestamp endtime;
    krb5_timestamp renew_till; ...;
} krb5_ticket_times;
typedef struct _krb5_creds {
    krb5_principal client; krb5_principal server; krb5_keyblock keyblock;
    krb5_ticket_times times; krb5_boolean is_skey; krb5_data ticket; krb5_data second_ticket;
    ...;
} krb5_creds;
typedef struct _krb5_enc_data {
    krb5_enctype enctype; krb5_kvno kvno; krb5_data ciphertext; ...;
} krb5_enc_data;
typedef struct _krb5_enc_tkt_part {
    krb5_flags flags; krb5_keyblock *session; krb5_principal client;
    krb5_ticket_times times; ...;
} krb5_enc_tkt_part;
typedef struct _krb5_ticket {
    krb5_principal server; krb5_enc_data enc_part; krb5_enc_tkt_part *enc_part2; ...;
} krb5_ticket;
typedef struct _krb5_authenticator {
    krb5_int32 cusec; krb5_timestamp ctime; ...;
} krb5_authenticator;
typedef struct _krb5_ap_rep_enc_part { ...; } krb5_ap_rep_enc_part;
typedef struct _krb5_error {
    krb5_timestamp ctime; krb5_int32 cusec; krb5_int32 susec; krb5_timestamp stime;
    krb5_ui_4 error; krb5_principal client; krb5_principal server; krb5_data text;
    krb5_data e_data; ...;
} krb5_error;
typedef struct krb5_keytab_entry_st {
    krb5_principal principal; krb5_kvno vno; krb5_keyblock key; ...;
} krb5_keytab_entry;
typedef void *krb5_kt_cursor;
typedef struct krb5_key_st *krb5_key;

#define AP_OPTS_USE_SESSION_KEY ...
#define AP_OPTS_MUTUAL_REQUIRED ...
#define KRB5_GC_USER_USER ...
#define KRB5_GC_NO_STORE ...
#define KRB5_AUTH_CONTEXT_DO_TIME ...
#define KRB5_KEYUSAGE_AP_REQ_AUTH ...
#define KRB5_NT_SRV_HST ...

long profile_init_path(const char *filepath, profile_t *ret_profile);
void profile_abandon(profile_t profile);
void profile_release(profile_t profile);
long profile_get_integer(profile_t profile, const char *name, const char *subname,
                         const char *subsubname, int def_val, int *ret_default);
krb5_error_code krb5_get_profile(krb5_context context, profile_t *profile);
krb5_error_code krb5_get_permitted_enctypes(krb5_context context, krb5_enctype **ktypes);
krb5_error_code krb5_get_tgs_ktypes(krb5_context context, krb5_const_principal princ,
                                    krb5_enctype **ktypes);
krb5_error_code krb5_set_default_tgs_enctypes(krb5_context context, const krb5_enctype *etypes);
void krb5_free_enctypes(krb5_context context, krb5_enctype *val);
krb5_error_code krb5_init_context_profile(profile_t profile, krb5_flags flags,
                                          krb5_context *context);
void krb5_free_context(krb5_context context);
const char *krb5_get_error_message(krb5_context ctx, krb5_error_code code);
void krb5_free_error_message(krb5_context ctx, const char *msg);
krb5_error_code krb5_get_default_realm(krb5_context context, char **lrealm);
void krb5_free_default_realm(krb5_context context, char *lrealm);

krb5_error_code krb5_us_timeofday(krb5_context context, krb5_timestamp *seconds,
                                  krb5_int32 *microseconds);
krb5_error_code krb5_set_real_time(krb5_context context, krb5_timestamp seconds,
                                   krb5_int32 microseconds);
krb5_error_code krb5_get_time_offsets(krb5_context context, krb5_timestamp *seconds,
                                      krb5_int32 *microseconds);

krb5_error_code krb5_parse_name(krb5_context context, const char *name,
                                krb5_principal *principal_out);
krb5_error_code krb5_unparse_name(krb5_context context, krb5_const_principal principal,
                                  char **name);
void krb5_free_unparsed_name(krb5_context context, char *val);
krb5_boolean krb5_principal_compare(krb5_context context, krb5_const_principal princ1,
                                    krb5_const_principal princ2);
void krb5_free_principal(krb5_context context, krb5_principal val);

krb5_error_code krb5_kt_resolve(krb5_context context, const char *name, krb5_keytab *ktid);
krb5_error_code krb5_kt_close(krb5_context context, krb5_keytab keytab);
krb5_error_code krb5_kt_add_entry(krb5_context context, krb5_keytab id,
                                  krb5_keytab_entry *entry);
krb5_error_code krb5_kt_start_seq_get(krb5_context context, krb5_keytab keytab,
                                      krb5_kt_cursor *cursor);
krb5_error_code krb5_kt_next_entry(krb5_context context, krb5_keytab keytab,
                                   krb5_keytab_entry *entry, krb5_kt_cursor *cursor);
krb5_error_code krb5_kt_end_seq_get(krb5_context context, krb5_keytab keytab,
                                    krb5_kt_cursor *cursor);
krb5_error_code krb5_free_keytab_entry_contents(krb5_context context,
                                                krb5_keytab_entry *entry);
#define KRB5_KT_END ...

krb5_error_code krb5_cc_resolve(krb5_context context, const char *name, krb5_ccache *cache);
krb5_error_code krb5_cc_initialize(krb5_context context, krb5_ccache cache,
                                   krb5_principal principal);
krb5_error_code krb5_cc_store_cred(krb5_context context, krb5_ccache cache, krb5_creds *creds);
krb5_error_code krb5_cc_destroy(krb5_context context, krb5_ccache cache);

krb5_error_code krb5_get_init_creds_opt_alloc(krb5_context context,
                                              krb5_get_init_creds_opt **opt);
void krb5_get_init_creds_opt_free(krb5_context context, krb5_get_init_creds_opt *opt);
void krb5_get_init_creds_opt_set_tkt_life(krb5_get_init_creds_opt *opt, krb5_deltat tkt_life);
krb5_error_code krb5_get_init_creds_keytab(krb5_context context, krb5_creds *creds,
                                           krb5_principal client, krb5_keytab arg_keytab,
                                           krb5_deltat start_time, const char *in_tkt_service,
                                           krb5_get_init_creds_opt *k5_gic_options);
krb5_error_code krb5_get_credentials(krb5_context context, krb5_flags options,
                                     krb5_ccache ccache, krb5_creds *in_creds,
                                     krb5_creds **out_creds);
void krb5_free_creds(krb5_context context, krb5_creds *val);
void krb5_free_cred_contents(krb5_context context, krb5_creds *val);

krb5_error_code krb5_auth_con_init(krb5_context context, krb5_auth_context *auth_context);
krb5_error_code krb5_auth_con_free(krb5_context context, krb5_auth_context auth_context);
krb5_error_code krb5_auth_con_getflags(krb5_context context, krb5_auth_context auth_context,
                                       krb5_int32 *flags);
krb5_error_code krb5_auth_con_setuseruserkey(krb5_context context,
                                             krb5_auth_context auth_context,
                                             krb5_keyblock *keyblock);
krb5_error_code krb5_auth_con_getauthenticator(krb5_context context,
                                               krb5_auth_context auth_context,
                                               krb5_authenticator **authenticator);
void krb5_free_authenticator(krb5_context context, krb5_authenticator *val);

krb5_error_code kink_mk_req(krb5_context context, krb5_auth_context *auth_context,
                            krb5_flags ap_req_options, krb5_creds *in_creds, krb5_data *outbuf);
krb5_error_code kink_rd_req(krb5_context context, krb5_auth_context auth_context,
                            krb5_int32 flags, const krb5_enctype *permitted,
                            krb5_timestamp now, krb5_int32 now_usec, const krb5_data *inbuf,
                            krb5_const_principal server, krb5_keytab keytab,
                            krb5_ticket **ticket);
krb5_error_code krb5_mk_rep(krb5_context context, krb5_auth_context auth_context,
                            krb5_data *outbuf);
krb5_error_code krb5_rd_rep(krb5_context context, krb5_auth_context auth_context,
                            const krb5_data *inbuf, krb5_ap_rep_enc_part **repl);
void krb5_free_ap_rep_enc_part(krb5_context context, krb5_ap_rep_enc_part *val);
krb5_error_code krb5_mk_error(krb5_context context, const krb5_error *dec_err,
                              krb5_data *enc_err);
krb5_error_code krb5_rd_error(krb5_context context, const krb5_data *enc_errbuf,
                              krb5_error **dec_error);
void krb5_free_error(krb5_context context, krb5_error *val);

krb5_error_code krb5_decode_ticket(const krb5_data *code, krb5_ticket **rep);
void krb5_free_ticket(krb5_context context, krb5_ticket *val);
krb5_error_code krb5_server_decrypt_ticket_keytab(krb5_context context, const krb5_keytab kt,
                                                  krb5_ticket *ticket);
krb5_error_code krb5_c_decrypt(krb5_context context, const krb5_keyblock *key,
                               krb5_keyusage usage, const krb5_data *cipher_state,
                               const krb5_enc_data *input, krb5_data *output);
void krb5_free_data_contents(krb5_context context, krb5_data *val);
krb5_error_code krb5_c_enctype_compare(krb5_context context, krb5_enctype e1, krb5_enctype e2,
                                       krb5_boolean *similar);
krb5_error_code krb5_k_create_key(krb5_context context, const krb5_keyblock *key_data,
                                  krb5_key *out);
void krb5_k_free_key(krb5_context context, krb5_key key);
struct kink_service_key { krb5_kvno kvno; krb5_enctype enctype; krb5_key key; };
krb5_error_code kink_check_ticket(krb5_context context, krb5_const_principal server,
                                  const struct kink_service_key *keys, int nkeys,
                                  const char *data, unsigned int offset, unsigned int length);
long long kink_usual_head(const char *data, size_t size);
"""


def _krb5_config(option: str) -> list[str]:
    try:
        out = subprocess.run(
            ["krb5-config", option, "krb5"], check=True, capture_output=True, text=True
        ).stdout
    except FileNotFoundError:
        raise SystemExit("building kink needs krb5-config (Debian: libkrb5-dev)") from None
    return shlex.split(out)


# krb5_auth_con_setpermetypes, krb5_get_tgs_ktypes, krb5_set_time_offsets and
# krb5_set_debugging_time are exported by libkrb5.so.3 but declared only in MIT's private
# k5-int.h: their prototypes (MIT 1.20 auth_con.c, init_ctx.c, os/toffset.c).
_PRIVATE = """
krb5_error_code KRB5_CALLCONV krb5_auth_con_setpermetypes(krb5_context, krb5_auth_context,
                                                          const krb5_enctype *);
krb5_error_code krb5_get_tgs_ktypes(krb5_context, krb5_const_principal, krb5_enctype **);
krb5_error_code krb5_set_time_offsets(krb5_context, krb5_timestamp, krb5_int32);
krb5_error_code krb5_set_debugging_time(krb5_context, krb5_timestamp, krb5_int32);
"""

# The AP exchange's libkrb5 calls with what they need around them, in one call from Python each
# (a cffi call releases and retakes the GIL: ~1-2 k instructions, issue 9).
#
# kink_rd_req: the acceptor's krb5_rd_req with
# - the auth context's flags and permitted session key enctypes (kink.krb5._lib.RawContext);
# - the context's clock held at `now` (read by the caller just before) for the call, its
#   offset put back after: rd_req would otherwise read the clock 4 times (3 time(), one
#   gettimeofday), a system call each in user-mode Linux. MIT os/toffset.c: with
#   KRB5_OS_TOFFSET_TIME (krb5_set_debugging_time) krb5_timeofday and krb5_us_timeofday return
#   the time set; krb5_set_time_offsets restores offset mode (an offset of 0 reads the clock
#   as no offset does). The checks rd_req makes against the time do not change.
# kink_mk_req: krb5_mk_req_extended (in_data NULL: no checksum) with the context's clock read
#   once, by krb5_us_timeofday, and held there for the call: it would read it twice more (the
#   ticket's validity check and the authenticator's ctime), a time() each.
# kink_check_ticket: what krb5_rd_req does first with a ticket under a keytab key (MIT 1.20
#   rd_req_dec.c try_one_princ), with a krb5_key whose derived keys libkrb5 made at its first
#   use and keeps (RFC 3961 §5.3) instead of a keyblock they are derived from anew: decode the
#   Ticket at octets [offset, offset + length) of `data` (libkrb5's own decoder), take the key
#   of its kvno and enctype from `keys` (kink.krb5._lib.TicketKeys), and only when the ticket
#   names `server` (krb5_principal_compare) decrypt its enc-part (key usage 2, RFC 4120
#   §7.5.1). The result is krb5_k_decrypt's code (KRB5KRB_AP_ERR_BAD_INTEGRITY: forged), or
#   the decoder's, or KRB5_KT_NOTFOUND when it did not decrypt. The plaintext (the ticket's
#   session key among it) is wiped and freed before it returns.
_AP = """
static krb5_error_code kink_rd_req(krb5_context context, krb5_auth_context auth_context,
                                   krb5_int32 flags, const krb5_enctype *permitted,
                                   krb5_timestamp now, krb5_int32 now_usec,
                                   const krb5_data *inbuf, krb5_const_principal server,
                                   krb5_keytab keytab, krb5_ticket **ticket)
{
    krb5_timestamp offset;
    krb5_int32 offset_usec;
    krb5_error_code code;

    code = krb5_auth_con_setflags(context, auth_context, flags);
    if (code == 0 && permitted != NULL)
        code = krb5_auth_con_setpermetypes(context, auth_context, permitted);
    if (code == 0)
        code = krb5_get_time_offsets(context, &offset, &offset_usec);
    if (code != 0)
        return code;
    krb5_set_debugging_time(context, now, now_usec);
    code = krb5_rd_req(context, &auth_context, inbuf, server, keytab, NULL, ticket);
    krb5_set_time_offsets(context, offset, offset_usec);
    return code;
}

static krb5_error_code kink_mk_req(krb5_context context, krb5_auth_context *auth_context,
                                   krb5_flags ap_req_options, krb5_creds *in_creds,
                                   krb5_data *outbuf)
{
    krb5_timestamp now, offset;
    krb5_int32 now_usec, offset_usec;
    krb5_error_code code;

    code = krb5_get_time_offsets(context, &offset, &offset_usec);
    if (code == 0)
        code = krb5_us_timeofday(context, &now, &now_usec);
    if (code != 0)
        return code;
    krb5_set_debugging_time(context, now, now_usec);
    code = krb5_mk_req_extended(context, auth_context, ap_req_options, NULL, in_creds, outbuf);
    krb5_set_time_offsets(context, offset, offset_usec);
    return code;
}

struct kink_service_key { krb5_kvno kvno; krb5_enctype enctype; krb5_key key; };

static krb5_error_code kink_check_ticket(krb5_context context, krb5_const_principal server,
                                         const struct kink_service_key *keys, int nkeys,
                                         const char *data, unsigned int offset,
                                         unsigned int length)
{
    krb5_data in;
    krb5_data out;
    krb5_ticket *ticket = NULL;
    krb5_error_code code;
    krb5_kvno kvno;
    int i;

    in.magic = 0;
    in.length = length;
    in.data = (char *)data + offset;
    code = krb5_decode_ticket(&in, &ticket);
    if (code != 0)
        return code;
    kvno = ticket->enc_part.kvno;
    code = KRB5_KT_NOTFOUND;
    for (i = 0; i < nkeys; i++) {
        if (keys[i].kvno == kvno && keys[i].enctype == ticket->enc_part.enctype)
            break;
    }
    if (i < nkeys && kvno != 0 && krb5_principal_compare(context, server, ticket->server)) {
        out.magic = 0;
        out.length = ticket->enc_part.ciphertext.length;
        out.data = malloc(out.length ? out.length : 1);
        if (out.data == NULL) {
            code = ENOMEM;
        } else {
            code = krb5_k_decrypt(context, keys[i].key, KRB5_KEYUSAGE_KDC_REP_TICKET, NULL,
                                  &ticket->enc_part, &out);
            explicit_bzero(out.data, ticket->enc_part.ciphertext.length);
            free(out.data);
        }
    }
    krb5_free_ticket(context, ticket);
    return code;
}
"""

# kink_usual_head: kink.krb5._der.usual_head's reading of an AP-REQ in the usual encoding (its
# docstring says which), here because every AP-REQ a responder receives, a forged one
# included, pays it: ~20 k instructions in Python, issue 9. -1 when `data` is not in the
# usual encoding (every octet it reads is checked to lie within `size`), else the
# authenticator cipher's octets [start, end) as start << 17 | end (end <= 8 + 65535).
_HEAD = """
static int kink_short_tlv(const unsigned char *p, size_t size, size_t pos, unsigned char tag,
                          size_t *start, size_t *end)
{
    size_t length;

    if (pos + 2 > size || p[pos] != tag)
        return 0;
    length = p[pos + 1];
    if (length < 0x80) {
        *start = pos + 2;
    } else if (length == 0x81 && pos + 3 <= size) {
        length = p[pos + 2];
        *start = pos + 3;
    } else if (length == 0x82 && pos + 4 <= size) {
        length = (size_t)p[pos + 2] << 8 | p[pos + 3];
        *start = pos + 4;
    } else {
        return 0;
    }
    *end = *start + length;
    return 1;
}

static long long kink_usual_head(const char *data, size_t size)
{
    static const unsigned char head[] = {0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02,
                                         0x01, 0x0e, 0xa2, 0x07, 0x03, 0x05, 0x00};
    static const unsigned char etype[] = {0xa0, 0x03, 0x02, 0x01};
    const unsigned char *p = (const unsigned char *)data;
    size_t outer_end, stop, s, e;

    if (size < 31 || p[0] != 0x6e || p[1] != 0x82 || p[4] != 0x30 || p[5] != 0x82
        || p[27] != 0xa3 || p[28] != 0x82 || memcmp(p + 8, head, sizeof(head)) != 0)
        return -1;
    outer_end = 4 + ((size_t)p[2] << 8 | p[3]);
    stop = 8 + ((size_t)p[6] << 8 | p[7]);
    if (outer_end > size || stop > outer_end)
        return -1;
    if (!kink_short_tlv(p, size, 31 + ((size_t)p[29] << 8 | p[30]), 0xa4, &s, &e) || e != stop)
        return -1;
    if (!kink_short_tlv(p, size, s, 0x30, &s, &e) || e != stop)
        return -1;
    if (s + sizeof(etype) > size || memcmp(p + s, etype, sizeof(etype)) != 0)
        return -1;
    if (!kink_short_tlv(p, size, s + 5, 0xa2, &s, &e) || e != stop)
        return -1;
    if (!kink_short_tlv(p, size, s, 0x04, &s, &e) || e != stop)
        return -1;
    return (long long)s << 17 | (long long)e;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "kink.krb5._krb5",
    "".join(f"#include <{h}>\n" for h in ("errno.h", "stdlib.h", "string.h", "krb5.h", "profile.h"))
    + _PRIVATE
    + _AP
    + _HEAD,
    extra_compile_args=_krb5_config("--cflags"),
    extra_link_args=_krb5_config("--libs"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
