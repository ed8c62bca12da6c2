// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {PartyAAccount} from "./PartyAAccount.sol";

interface IERC20ForMultiAccount {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);
    function decimals() external view returns (uint8);
}

interface ISymmioForMultiAccount {
    function getCollateral() external view returns (address);
    function depositFor(address user, uint256 amount) external;
}

/// Owner → sub-accounts registry with per-selector delegation (chain.md §1-§2).
///
/// Revert strings:
///   MultiAccount: Only admin | MultiAccount: Paused | MultiAccount: Sender isn't owner of account
///   MultiAccount: Invalid target | MultiAccount: Invalid state | MultiAccount: Too many calls
///   MultiAccount: Invalid call data | MultiAccount: Unauthorized access
///   MultiAccount: Revoke not proposed | MultiAccount: Cooldown not reached | MultiAccount: Transfer failed
///   (a failed forwarded call re-raises the diamond's revert data unchanged)
contract MultiAccount {
    struct Account {
        address accountAddress;
        string name;
    }

    uint256 public constant MAX_CALLS = 255;

    address public admin;
    address public symmioAddress;
    bool public paused;
    uint256 public revokeCooldown = 1 hours;

    mapping(address => Account[]) internal accounts;
    mapping(address => address) public owners;
    mapping(address => mapping(address => mapping(bytes4 => bool))) public delegatedAccesses;
    mapping(address => mapping(address => mapping(bytes4 => uint256))) public revokeProposalTimestamp;

    event AddAccount(address user, address account, string name);
    event EditAccountName(address user, address account, string name);
    event DepositForAccount(address user, address account, uint256 amount);
    event AllocateForAccount(address user, address account, uint256 amount);
    event WithdrawFromAccount(address user, address account, uint256 amount);
    event Call(address user, address account, bytes _callData, bool _success, bytes _resultData);
    event DelegateAccess(address account, address target, bytes4 selector, bool state);
    event DelegateAccesses(address account, address target, bytes4[] selector, bool state);
    event ProposeToRevokeAccesses(address account, address target, bytes4[] selector);
    event SetRevokeCooldown(uint256 oldCooldown, uint256 newCooldown);
    event SetPaused(bool paused);

    modifier onlyAdmin() {
        require(msg.sender == admin, "MultiAccount: Only admin");
        _;
    }

    modifier whenNotPaused() {
        require(!paused, "MultiAccount: Paused");
        _;
    }

    modifier onlyOwner(address account) {
        require(owners[account] == msg.sender, "MultiAccount: Sender isn't owner of account");
        _;
    }

    constructor(address symmio) {
        admin = msg.sender;
        symmioAddress = symmio;
    }

    // ---- admin ----------------------------------------------------------------------------
    function setRevokeCooldown(uint256 cooldown) external onlyAdmin {
        emit SetRevokeCooldown(revokeCooldown, cooldown);
        revokeCooldown = cooldown;
    }

    function setPaused(bool paused_) external onlyAdmin {
        paused = paused_;
        emit SetPaused(paused_);
    }

    // ---- accounts -------------------------------------------------------------------------
    function addAccount(string calldata name) external whenNotPaused {
        address account = address(new PartyAAccount(address(this), symmioAddress));
        owners[account] = msg.sender;
        accounts[msg.sender].push(Account(account, name));
        emit AddAccount(msg.sender, account, name);
    }

    function editAccountName(address account, string calldata name) external whenNotPaused onlyOwner(account) {
        Account[] storage list = accounts[msg.sender];
        for (uint256 i = 0; i < list.length; i++) {
            if (list[i].accountAddress == account) list[i].name = name;
        }
        emit EditAccountName(msg.sender, account, name);
    }

    function depositForAccount(address account, uint256 amount) external whenNotPaused onlyOwner(account) {
        _depositFor(account, amount);
        emit DepositForAccount(msg.sender, account, amount);
    }

    /// Pull `amount` collateral from the sender, deposit it for the account and allocate it.
    function depositAndAllocateForAccount(address account, uint256 amount) external whenNotPaused onlyOwner(account) {
        uint256 amount18 = _depositFor(account, amount);
        _innerCall(account, abi.encodeWithSignature("allocate(uint256)", amount18));
        emit AllocateForAccount(msg.sender, account, amount18);
    }

    /// `amount` in 18 decimals; paid to the account's owner.
    function withdrawFromAccount(address account, uint256 amount) external whenNotPaused onlyOwner(account) {
        _innerCall(account, abi.encodeWithSignature("withdrawTo(address,uint256)", owners[account], amount));
        emit WithdrawFromAccount(msg.sender, account, amount);
    }

    // ---- delegation -----------------------------------------------------------------------
    function delegateAccess(address account, address target, bytes4 selector, bool state)
        external
        whenNotPaused
        onlyOwner(account)
    {
        _checkGrant(account, target, state);
        delegatedAccesses[account][target][selector] = true;
        emit DelegateAccess(account, target, selector, true);
    }

    function delegateAccesses(address account, address target, bytes4[] calldata selector, bool state)
        external
        whenNotPaused
        onlyOwner(account)
    {
        _checkGrant(account, target, state);
        for (uint256 i = 0; i < selector.length; i++) {
            delegatedAccesses[account][target][selector[i]] = true;
        }
        emit DelegateAccesses(account, target, selector, true);
    }

    function proposeToRevokeAccesses(address account, address target, bytes4[] calldata selector)
        external
        whenNotPaused
        onlyOwner(account)
    {
        for (uint256 i = 0; i < selector.length; i++) {
            revokeProposalTimestamp[account][target][selector[i]] = block.timestamp;
        }
        emit ProposeToRevokeAccesses(account, target, selector);
    }

    function revokeAccesses(address account, address target, bytes4[] calldata selector)
        external
        whenNotPaused
        onlyOwner(account)
    {
        for (uint256 i = 0; i < selector.length; i++) {
            uint256 proposedAt = revokeProposalTimestamp[account][target][selector[i]];
            require(proposedAt != 0, "MultiAccount: Revoke not proposed");
            require(proposedAt + revokeCooldown <= block.timestamp, "MultiAccount: Cooldown not reached");
            delegatedAccesses[account][target][selector[i]] = false;
            revokeProposalTimestamp[account][target][selector[i]] = 0;
        }
        emit DelegateAccesses(account, target, selector, false);
    }

    // ---- forwarding -----------------------------------------------------------------------
    /// The owner may send anything; others only selectors the owner delegated to them.
    function _call(address account, bytes[] calldata _callDatas) external whenNotPaused {
        require(_callDatas.length <= MAX_CALLS, "MultiAccount: Too many calls");
        bool isOwner = owners[account] == msg.sender;
        for (uint256 i = 0; i < _callDatas.length; i++) {
            bytes calldata callData = _callDatas[i];
            if (!isOwner) {
                require(callData.length >= 4, "MultiAccount: Invalid call data");
                require(delegatedAccesses[account][msg.sender][bytes4(callData[:4])], "MultiAccount: Unauthorized access");
            }
            _innerCall(account, callData);
        }
    }

    // ---- views ----------------------------------------------------------------------------
    function getAccountsLength(address user) external view returns (uint256) {
        return accounts[user].length;
    }

    function getAccounts(address user, uint256 start, uint256 size) external view returns (Account[] memory out) {
        Account[] storage list = accounts[user];
        uint256 n = list.length;
        if (start >= n) return new Account[](0);
        if (size > n - start) size = n - start;
        out = new Account[](size);
        for (uint256 i = 0; i < size; i++) {
            out[i] = list[start + i];
        }
    }

    // ---- internals ------------------------------------------------------------------------
    function _checkGrant(address account, address target, bool state) private view {
        require(state, "MultiAccount: Invalid state");
        require(target != msg.sender && target != account && target != address(0), "MultiAccount: Invalid target");
    }

    /// Pulls collateral in its own decimals, returns the 18-decimal amount credited on the diamond.
    function _depositFor(address account, uint256 amount) private returns (uint256 amount18) {
        address collateral = ISymmioForMultiAccount(symmioAddress).getCollateral();
        require(
            IERC20ForMultiAccount(collateral).transferFrom(msg.sender, address(this), amount),
            "MultiAccount: Transfer failed"
        );
        require(IERC20ForMultiAccount(collateral).approve(symmioAddress, amount), "MultiAccount: Transfer failed");
        ISymmioForMultiAccount(symmioAddress).depositFor(account, amount);
        amount18 = amount * 1e18 / (10 ** IERC20ForMultiAccount(collateral).decimals());
    }

    function _innerCall(address account, bytes memory callData) private {
        (bool success, bytes memory resultData) = PartyAAccount(account)._call(callData);
        emit Call(msg.sender, account, callData, success, resultData);
        if (!success) {
            assembly {
                revert(add(resultData, 32), mload(resultData))
            }
        }
    }
}
