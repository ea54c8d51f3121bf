#pragma once
// An error the HTTP API reports to the client as an OpenAI-style body:
//   {"error": {"message": …, "type": …, "param": …, "code": …}} with the matching HTTP status.
#include <stdexcept>
#include <string>

namespace retort::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {})
      : std::runtime_error(std::move(message)), status_(status), param_(std::move(param)), code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // OpenAI's error type for the status: invalid_request_error, authentication_error, ...
  const char* type() const;

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// The JSON body for an error (always valid UTF-8 JSON).
std::string error_body(int status, const std::string& message, const std::string& param = {},
                       const std::string& code = {});
std::string error_body(const ApiError& error);
const char* error_type_for_status(int status);

}  // namespace retort::server
